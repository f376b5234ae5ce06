// Records as read: every record a process acts on is checked against its shape first, so a
// malformed znode (a bad write, an older version, a hand edit) is met as a value that says what is
// wrong, never as an exception deep in a process (or an uncaught one that takes it down). What a
// reader does with one is its own decision: the orc and the compute fail a corrupt unit with
// CORRUPT_RECORD, the lists skip a bad record and log it, the orc's view leaves a bad compute out.
import type { Zk } from '../zk/client.js';
import { decode } from '../zk/codec.js';
import type { WorkUnitId } from '../common/ids.js';
import type { ComputeCapacity, Consumes, ManagedRecord, ServerRecord, TaskRecord, WorkUnitRecord } from '../common/model.js';
import { isWorkKind, SERVER_STATUSES, STEP_NAMES, VM_STATUSES, WORK_KINDS, WORK_UNIT_STATES, type UnitErrorCode } from '../common/vocabulary.js';

/** What a check answers: the record, typed, or the first thing wrong with it. */
export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string };

/** One field's check: null when it is right, else what is wrong (`at` names the field). */
type Rule = (v: unknown, at: string) => string | null;

/** The placement scorer's resource columns are 32-bit: a larger value is refused, not wrapped. */
export const RESOURCE_MAX = 2 ** 31 - 1;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
};

const str: Rule = (v, at) => (typeof v === 'string' ? null : `${at} is ${show(v)}, not a string`);
// An id names a znode: one path segment of the characters ids are made of (uuids, compute names).
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const id: Rule = (v, at) => (typeof v === 'string' && ID.test(v) ? null : `${at} is ${show(v)}, not an id`);
// Milliseconds that a Date can hold (ECMAScript's limit): anything past it cannot even be shown.
const TIME_MAX = 8.64e15;
const time: Rule = (v, at) => (typeof v === 'number' && v >= 0 && v <= TIME_MAX ? null : `${at} is ${show(v)}, not a time`);
const int =
  (min: number, max: number): Rule =>
  (v, at) =>
    Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? null : `${at} is ${show(v)}, not an integer in [${min}, ${max}]`;
const oneOf =
  (allowed: readonly string[]): Rule =>
  (v, at) =>
    typeof v === 'string' && allowed.includes(v) ? null : `${at} is ${show(v)}, not one of ${allowed.join(', ')}`;
const nullable =
  (rule: Rule): Rule =>
  (v, at) =>
    v === null ? null : rule(v, at);
const optional =
  (rule: Rule): Rule =>
  (v, at) =>
    v === undefined ? null : rule(v, at);
const arrayOf =
  (rule: Rule): Rule =>
  (v, at) => {
    if (!Array.isArray(v)) return `${at} is ${show(v)}, not a list`;
    for (let i = 0; i < v.length; i++) {
      const p = rule(v[i], `${at}[${i}]`);
      if (p) return p;
    }
    return null;
  };
const shape =
  (fields: Record<string, Rule>): Rule =>
  (v, at) => {
    if (!isObject(v)) return `${at || 'the record'} is ${show(v)}, not an object`;
    for (const [k, rule] of Object.entries(fields)) {
      const p = rule(v[k], at ? `${at}.${k}` : k);
      if (p) return p;
    }
    return null;
  };

const checker =
  <T>(rule: Rule) =>
  (v: unknown): Checked<T> => {
    const problem = rule(v, '');
    return problem ? { ok: false, problem } : { ok: true, value: v as T };
  };

const resource = int(0, RESOURCE_MAX);
const consumesRule = shape({ vcpus: resource, ram_mb: resource, disk_gb: resource, bandwidth_mbps: resource });
const signed = int(-RESOURCE_MAX - 1, RESOURCE_MAX);
const flavorRule = shape({ vcpus: int(1, RESOURCE_MAX), ram_mb: resource, disk_gb: resource });
const errorRule = shape({ code: str, message: str });
const stepDone = shape({ name: oneOf(STEP_NAMES), time_to_completion_ms: time, completed_at: time });
const requestRule = shape({
  name: str,
  flavor: flavorRule,
  bandwidth_mbps: resource,
  zone: optional(str),
  labels: optional(arrayOf(str)),
  group: optional(str),
  anti_affinity_group: optional(str),
});

const unitRule: Rule = (v, at) => {
  const p = shape({
    id: id,
    kind: oneOf(WORK_KINDS),
    state: oneOf(WORK_UNIT_STATES),
    // '' only on a unit failed as corrupt whose server could not be read (see corruptUnitFailed)
    server_id: (x, a) => (x === '' ? null : id(x, a)),
    shard: int(0, RESOURCE_MAX),
    compute_id: nullable(id),
    attempts: int(0, RESOURCE_MAX),
    tried: arrayOf(id),
    steps_completed: arrayOf(stepDone),
    steps_left: arrayOf(oneOf(STEP_NAMES)),
    request: optional(requestRule),
    error: optional(errorRule),
    request_id: optional(str),
    created_at: time,
    updated_at: time,
    finished_at: nullable(time),
  })(v, at);
  if (p) return p;
  const u = v as WorkUnitRecord;
  const field = (f: string) => (at ? `${at}.${f}` : f);
  if (u.state === 'FAILED') return null;
  if (u.server_id === '') return `${field('server_id')} is empty on a ${u.state} unit`;
  // A build is placed from its request: one still to run cannot move without it.
  return u.kind === 'build' && u.request === undefined ? `${field('request')} is missing from a build` : null;
};

export const checkWorkUnit = checker<WorkUnitRecord>(unitRule);

export const checkServer = checker<ServerRecord>(
  shape({
    id: id,
    name: str,
    status: oneOf(SERVER_STATUSES),
    compute_id: nullable(id),
    flavor: flavorRule,
    labels: arrayOf(str),
    zone: nullable(str),
    created_at: time,
    task: nullable(id),
    last_error: optional(errorRule),
  }),
);

export const checkTask = checker<TaskRecord>(
  shape({
    work_unit_id: id,
    kind: oneOf(WORK_KINDS),
    server_id: id,
    shard: int(0, RESOURCE_MAX),
    consumes: consumesRule,
    name: str,
    attempt: int(0, RESOURCE_MAX),
    birthed_on: time,
    unit: optional(shape({ record: unitRule, version: int(0, RESOURCE_MAX) })),
  }),
);

export const checkManaged = checker<ManagedRecord>(
  shape({ server_id: id, name: str, kind: oneOf(['vm']), birthed_on: time, consumes: consumesRule, status: oneOf(VM_STATUSES) }),
);

export const checkCapacity = checker<ComputeCapacity>(
  shape({ vcpus: resource, ram_mb: resource, disk_gb: resource, bandwidth_mbps: resource, zone: str, labels: arrayOf(str), libvirt_uri: str }),
);

/** self/free: what is left, which overcommit may take below zero. */
export const checkFree = checker<Consumes>(shape({ vcpus: signed, ram_mb: signed, disk_gb: signed, bandwidth_mbps: signed }));

/** A record as found: absent, well-formed (with the version a write over it checks), or corrupt. */
export type Stored<T> =
  | { state: 'absent' }
  | { state: 'ok'; value: T; version: number }
  | { state: 'corrupt'; problem: string; raw: unknown; version: number };

/** A znode's bytes as read (null: no such node), checked; bytes that do not even decode are corrupt too. */
export function storedOf<T>(r: { data: Buffer | undefined; stat: { version: number } } | null, check: (v: unknown) => Checked<T>): Stored<T> {
  if (!r) return { state: 'absent' };
  let raw: unknown;
  try {
    raw = decode(r.data);
  } catch (e) {
    return { state: 'corrupt', problem: `its bytes do not decode (${(e as Error).message})`, raw: undefined, version: r.stat.version };
  }
  const c = check(raw);
  return c.ok ? { state: 'ok', value: c.value, version: r.stat.version } : { state: 'corrupt', problem: c.problem, raw, version: r.stat.version };
}

/** Reads and checks a record. */
export async function readRecord<T>(zk: Pick<Zk, 'getRaw'>, path: string, check: (v: unknown) => Checked<T>): Promise<Stored<T>> {
  return storedOf(await zk.getRaw(path), check);
}

/**
 * The unit a corrupt record becomes: FAILED with CORRUPT_RECORD, keeping what of it can be read
 * (its kind, server, compute, times) so a poll still says what it was. Its steps are not trusted.
 */
export function corruptUnitFailed(a: { id: WorkUnitId; shard: number; raw: unknown; problem: string; at: number }): WorkUnitRecord {
  const r = isObject(a.raw) ? a.raw : {};
  const kind = isWorkKind(r.kind) ? r.kind : WORK_KINDS[0]!;
  const keep = <T>(rule: Rule, v: unknown, otherwise: T): T => (rule(v, '') === null ? (v as T) : otherwise);
  return {
    id: a.id,
    kind,
    state: 'FAILED',
    server_id: keep(id, r.server_id, ''),
    shard: a.shard,
    compute_id: keep(nullable(id), r.compute_id, null),
    attempts: keep(int(0, RESOURCE_MAX), r.attempts, 0),
    tried: keep(arrayOf(id), r.tried, []),
    steps_completed: [],
    steps_left: [],
    created_at: keep(time, r.created_at, a.at),
    updated_at: a.at,
    finished_at: a.at,
    error: { code: 'CORRUPT_RECORD' satisfies UnitErrorCode, message: `the work unit's record is malformed (${a.problem}); it cannot run` },
    // A build's request is kept when it reads right, so that the unit shows what was asked.
    ...(requestRule(r.request, '') === null && kind === 'build' ? { request: r.request as WorkUnitRecord['request'] } : {}),
  } as unknown as WorkUnitRecord;
}
