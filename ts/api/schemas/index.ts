// JSON schemas: they validate every body, param and query, and document the API (GET /openapi.json).
// Every enum is Quark's vocabulary (ts/common/vocabulary.ts), never a list written again here.
import { ACTIONS, SERVER_STATUSES, STEP_NAMES, WORK_KINDS, WORK_UNIT_STATES } from '../../common/vocabulary.js';

const uuid = { type: 'string', pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' } as const;
const name = { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' } as const;
const label = { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9._:/=-]*$' } as const;
const timestamp = { type: ['string', 'null'], description: 'ISO 8601' } as const;
const errorInfo = {
  type: 'object',
  properties: {
    code: { type: 'string' },
    message: { type: 'string' },
    rejected: { type: 'object', additionalProperties: { type: 'integer' } },
  },
} as const;

export const flavor = {
  type: 'object',
  additionalProperties: false,
  required: ['vcpus', 'ram_mb', 'disk_gb'],
  properties: {
    vcpus: { type: 'integer', minimum: 1, maximum: 1024 },
    ram_mb: { type: 'integer', minimum: 16, maximum: 16 * 1024 * 1024 },
    disk_gb: { type: 'integer', minimum: 0, maximum: 1024 * 1024 },
  },
} as const;

export const createServerBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'flavor'],
  properties: {
    name,
    flavor,
    labels: { type: 'array', items: label, maxItems: 32, uniqueItems: true, description: 'the compute must carry every one of these labels' },
    zone: { ...name, description: 'the compute must be in this zone' },
    bandwidth_mbps: { type: 'integer', minimum: 0, maximum: 1_000_000 },
  },
} as const;

export const actionBody = {
  type: 'object',
  additionalProperties: false,
  required: ['action'],
  properties: { action: { type: 'string', enum: ACTIONS } },
} as const;

export const idParams = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: uuid },
} as const;

export const listServersQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { status: { type: 'string', enum: SERVER_STATUSES } },
} as const;

export const workUnitAccepted = {
  type: 'object',
  properties: { work_unit_id: uuid, server_id: uuid },
} as const;

export const server = {
  type: 'object',
  properties: {
    id: uuid,
    name: { type: 'string' },
    status: { type: 'string', enum: SERVER_STATUSES },
    compute_id: { type: ['string', 'null'] },
    flavor: { type: 'object', properties: flavor.properties },
    labels: { type: 'array', items: { type: 'string' } },
    zone: { type: ['string', 'null'] },
    task: { type: ['string', 'null'], description: 'the work unit acting on the server now' },
    created_at: timestamp,
    last_error: errorInfo,
  },
} as const;

export const workUnit = {
  type: 'object',
  properties: {
    id: uuid,
    kind: { type: 'string', enum: WORK_KINDS },
    state: { type: 'string', enum: WORK_UNIT_STATES },
    server_id: uuid,
    compute_id: { type: ['string', 'null'] },
    attempts: { type: 'integer' },
    steps_completed: {
      type: 'array',
      items: { type: 'object', properties: { name: { type: 'string', enum: STEP_NAMES }, time_to_completion_ms: { type: 'number' }, completed_at: timestamp } },
    },
    steps_left: { type: 'array', items: { type: 'string', enum: STEP_NAMES } },
    error: errorInfo,
    created_at: timestamp,
    finished_at: timestamp,
  },
} as const;

const res = { type: 'object', properties: { vcpus: { type: 'number' }, ram_mb: { type: 'number' }, disk_gb: { type: 'number' }, bandwidth_mbps: { type: 'number' } } } as const;
export const compute = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    alive: { type: 'boolean' },
    zone: { type: 'string' },
    labels: { type: 'array', items: { type: 'string' } },
    capacity: res,
    free: res,
    managing: { type: 'integer' },
    active_tasks: { type: 'integer' },
    next_tasks: { type: 'integer' },
  },
} as const;

export const errorBody = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const;
