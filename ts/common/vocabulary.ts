// Quark's words, written once: the kinds of work and their steps, work-unit states, server
// statuses, user actions and the codes a failed unit carries. The machines (ts/actors), the
// records (model.ts), the API's schemas and the visualizer's lists all derive from these.
// Nothing here may import anything: the browser bundle uses it as it is.

/** Each kind of work and its steps, in order. Each step is idempotent and keyed by ids. */
export const KINDS = {
  build: ['allocate_vcpu', 'allocate_storage', 'define', 'start'],
  delete: ['stop', 'undefine', 'release'],
  start: ['start'],
  stop: ['stop'],
  reboot: ['reboot'],
} as const;

export type WorkKind = keyof typeof KINDS;
export type StepName = (typeof KINDS)[WorkKind][number];
export const WORK_KINDS = Object.keys(KINDS) as WorkKind[];
/** Every step name once, in the order kinds first use them. */
export const STEP_NAMES: readonly StepName[] = [...new Set(WORK_KINDS.flatMap((k) => KINDS[k]))];

export const isWorkKind = (s: unknown): s is WorkKind => typeof s === 'string' && Object.hasOwn(KINDS, s);

/** A work unit's states: waiting for placement, placed, running its steps, then one of two ends. */
export const WORK_UNIT_STATES = ['PENDING', 'SCHEDULED', 'RUNNING', 'SUCCEEDED', 'FAILED'] as const;
export type WorkUnitState = (typeof WORK_UNIT_STATES)[number];
export const TERMINAL_STATES = ['SUCCEEDED', 'FAILED'] as const satisfies readonly WorkUnitState[];
export const TERMINAL: ReadonlySet<WorkUnitState> = new Set(TERMINAL_STATES);

/** A server's statuses: the states of the VM machine (ts/actors/vm.ts). DELETED is never stored. */
export const VM_STATUSES = ['BUILDING', 'ACTIVE', 'STOPPED', 'DELETING', 'DELETED', 'ERROR', 'LOST'] as const;
export type VmStatus = (typeof VM_STATUSES)[number];
/** The statuses a stored server record can have (its record goes when it is DELETED). */
export const SERVER_STATUSES = VM_STATUSES.filter((s): s is Exclude<VmStatus, 'DELETED'> => s !== 'DELETED');

/** Server actions a user may request through POST /v1/servers/:id/actions (delete has its own verb). */
export const ACTIONS = ['start', 'stop', 'reboot'] as const satisfies readonly WorkKind[];
export type ServerAction = (typeof ACTIONS)[number];

/**
 * Codes Quark itself gives a failed work unit. A step that libvirt fails carries libvirt's own
 * code instead (ts/native/libvirt.ts), so a stored code is any string.
 */
export const UNIT_ERROR_CODES = [
  // decided by the orc
  'NO_VALID_HOST',
  'COMPUTE_LOST',
  'NO_COMPUTE',
  'SERVER_NOT_FOUND',
  // superseded by CORRUPT_RECORD; units failed with it before may still be stored
  'MALFORMED_WORK_UNIT',
  // decided by whoever reads a record that is not what it should be (ts/lifecycle/records.ts)
  'CORRUPT_RECORD',
  // decided by the compute's steps
  'NO_CAPACITY',
  'DOMAIN_MISSING',
  'DOMAIN_PAUSED',
  'VM_NOT_RUNNING',
  'STEP_FAILED',
  'NOT_IN_FLIGHT',
  'NOT_PROVIDED',
  // decided by a real-guest compute (ts/guest/host.ts)
  'IMAGE_REQUIRED',
  'USER_DATA_TOO_LARGE',
  'IMAGE_FETCH_FAILED',
] as const;
export type UnitErrorCode = (typeof UNIT_ERROR_CODES)[number];

/**
 * Server group policies (Nova's): affinity keeps members on one compute, anti-affinity on
 * distinct computes, soft-anti-affinity spreads them while it can and still places when it cannot.
 */
export const GROUP_POLICIES = ['affinity', 'anti-affinity', 'soft-anti-affinity'] as const;
export type GroupPolicy = (typeof GROUP_POLICIES)[number];
export const isGroupPolicy = (s: unknown): s is GroupPolicy => typeof s === 'string' && (GROUP_POLICIES as readonly string[]).includes(s);
