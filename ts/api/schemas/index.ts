// JSON schemas: they validate every body, param and query, and document the API (GET /openapi.json).
// Every enum is Quark's vocabulary (ts/common/vocabulary.ts), never a list written again here.
import { ACTIONS, GROUP_POLICIES, STEP_NAMES, VM_STATUSES, WORK_KINDS, WORK_UNIT_STATES } from '../../common/vocabulary.js';

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

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const portMapping = {
  type: 'object',
  additionalProperties: false,
  required: ['host_port', 'guest_port'],
  properties: { host_port: { ...port, description: "TCP port on the compute's 127.0.0.1" }, guest_port: port },
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
    group: { ...uuid, description: 'a server group of the project: the server joins it and is placed by its policy' },
    image: { ...name, description: "image name or id, of the booting project's images; a build without one is placed only on computes that run no real guests" },
    user_data: {
      type: 'string',
      maxLength: 64 * 1024,
      pattern: '^[A-Za-z0-9+/]*={0,2}$',
      description: 'cloud-init NoCloud user data, base64 (at most 64 KiB encoded)',
    },
    ports: {
      type: 'array',
      items: portMapping,
      maxItems: 16,
      description: "TCP ports of the compute's 127.0.0.1 forwarded into the guest (user-mode network)",
    },
  },
} as const;

export const imageName = name;

export const uploadImageQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'format'],
  properties: { name, format: { type: 'string', enum: ['qcow2', 'raw'] } },
} as const;

export const image = {
  type: 'object',
  properties: {
    id: uuid,
    project: { type: ['string', 'null'], description: 'the project that uploaded it' },
    name: { type: 'string' },
    format: { type: 'string' },
    size_bytes: { type: 'integer' },
    sha256: { type: 'string' },
    created_at: timestamp,
  },
} as const;

export const consoleQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { lines: { type: 'string', pattern: '^[1-9][0-9]{0,4}$', description: 'how many of the last lines (default 100, at most 10000)' } },
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

/** A compute's id, as `quark compute --id` takes it. */
export const computeIdParams = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: name },
} as const;

export const evacuation = {
  type: 'object',
  properties: {
    compute_id: { type: 'string' },
    evacuated: {
      type: 'array',
      items: { type: 'object', properties: { server_id: { type: 'string' }, work_unit_id: { type: 'string' } } },
    },
    skipped: {
      type: 'array',
      items: { type: 'object', properties: { server_id: { type: 'string' }, reason: { type: 'string' } } },
    },
  },
} as const;

// Paging: `limit` (query strings are strings and the API does not coerce types: digits) and the
// opaque `marker` a previous page gave in X-Next-Marker.
const pageLimit = { type: 'string', pattern: '^[0-9]{1,4}$', description: 'most items in the page (1..1000)' } as const;
const marker = { type: 'string', minLength: 1, maxLength: 400, pattern: '^[A-Za-z0-9_-]+$', description: "the previous page's X-Next-Marker" } as const;

export const listServersQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    // DELETED lists the deleted servers still kept (the orcs' --deleted-retention).
    status: { type: 'string', enum: VM_STATUSES },
    compute_id: { ...name, description: 'only servers on this compute' },
    name_prefix: { type: 'string', minLength: 1, maxLength: 63, description: 'only servers whose name starts with this' },
    limit: pageLimit,
    marker,
  },
} as const;

export const listWorkUnitsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    state: { type: 'string', enum: WORK_UNIT_STATES },
    kind: { type: 'string', enum: WORK_KINDS },
    server_id: uuid,
    compute_id: { ...name, description: 'only units placed on this compute' },
    limit: pageLimit,
    marker,
  },
} as const;

export const workUnitAccepted = {
  type: 'object',
  properties: { work_unit_id: uuid, server_id: uuid },
} as const;

export const server = {
  type: 'object',
  properties: {
    id: uuid,
    project: { type: ['string', 'null'], description: 'the project the server counts against' },
    name: { type: 'string' },
    status: { type: 'string', enum: VM_STATUSES, description: 'DELETED only in GET /v1/servers?status=DELETED' },
    compute_id: { type: ['string', 'null'] },
    flavor: { type: 'object', properties: flavor.properties },
    labels: { type: 'array', items: { type: 'string' } },
    zone: { type: ['string', 'null'] },
    task: { type: ['string', 'null'], description: 'the work unit acting on the server now' },
    group: { type: ['string', 'null'], description: 'the server group it was booted into' },
    created_at: timestamp,
    deleted_at: { type: 'string', description: 'ISO 8601; deleted servers only' },
    last_error: errorInfo,
    image: { type: 'string', description: 'the id of the image it booted from' },
    console: { type: 'boolean', description: 'GET /v1/servers/:id/console has a serial console to show (only on GET of one server)' },
    ports: { type: 'array', items: { type: 'object', properties: portMapping.properties } },
  },
} as const;

export const workUnit = {
  type: 'object',
  properties: {
    id: uuid,
    project: { type: ['string', 'null'] },
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
    request_id: { type: ['string', 'null'], description: 'the X-Request-Id of the call that made it (logs of every process carry it)' },
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
    cordoned: { type: 'boolean', description: 'an operator cordoned it: placement passes it over, its VMs run on' },
    zone: { type: 'string' },
    labels: { type: 'array', items: { type: 'string' } },
    capacity: res,
    free: res,
    managing: { type: 'integer' },
    active_tasks: { type: 'integer' },
    next_tasks: { type: 'integer' },
  },
} as const;

export const createGroupBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'policy'],
  properties: { name, policy: { type: 'string', enum: GROUP_POLICIES } },
} as const;

export const serverGroup = {
  type: 'object',
  properties: {
    id: uuid,
    project: { type: 'string' },
    name: { type: 'string' },
    policy: { type: 'string', enum: GROUP_POLICIES },
    created_at: timestamp,
    members: {
      type: 'array',
      items: { type: 'object', properties: { server_id: uuid, compute_id: { type: ['string', 'null'], description: 'where its claim placed it; null until placed' } } },
    },
  },
} as const;

export const errorBody = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      // Details some errors carry: the numbers of a QUOTA_EXCEEDED, the ids of an OUTCOME_UNKNOWN.
      additionalProperties: true,
    },
  },
} as const;

// ---- tokens, projects, audit ----------------------------------------------------------------------

export const projectId = { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' } as const;
export const projectParams = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: projectId },
} as const;
export const tokenParams = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[0-9a-f]{24}$' } },
} as const;

export const createTokenBody = {
  type: 'object',
  additionalProperties: false,
  required: ['project', 'role'],
  properties: {
    project: projectId,
    role: { type: 'string', enum: ['admin', 'member', 'reader'] },
    ttl_seconds: { type: 'integer', minimum: 1, maximum: 10 * 365 * 86_400, description: 'absent: the token never expires' },
    name: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9 ._-]*$' },
  },
} as const;

export const tokenView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    project: { type: 'string' },
    role: { type: 'string' },
    name: { type: ['string', 'null'] },
    status: { type: 'string', enum: ['active', 'expired', 'revoked'] },
    created_at: timestamp,
    expires_at: timestamp,
    revoked_at: timestamp,
    created_by: { type: ['string', 'null'] },
  },
} as const;

const limit = { type: ['integer', 'null'], minimum: 0, maximum: 1_000_000_000 } as const;
export const quotaBody = {
  type: 'object',
  additionalProperties: false,
  properties: { instances: limit, vcpus: limit, ram_mb: limit, disk_gb: limit },
  description: 'a resource left out or null is unlimited',
} as const;
const counts = {
  type: 'object',
  properties: { instances: { type: 'integer' }, vcpus: { type: 'integer' }, ram_mb: { type: 'integer' }, disk_gb: { type: 'integer' } },
} as const;
export const quotaView = {
  type: 'object',
  properties: { project: { type: 'string' }, quota: quotaBody },
} as const;
export const usageView = {
  type: 'object',
  properties: { project: { type: 'string' }, usage: counts, quota: quotaBody },
} as const;

export const auditQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    since: { type: 'string', maxLength: 40, description: 'ISO 8601 time or milliseconds since the epoch' },
    limit: { type: 'string', pattern: '^[0-9]{1,4}$' },
  },
} as const;

export const auditEntry = {
  type: 'object',
  properties: {
    seq: { type: 'integer' },
    at: timestamp,
    token_id: { type: ['string', 'null'] },
    project: { type: ['string', 'null'] },
    role: { type: ['string', 'null'] },
    method: { type: 'string' },
    route: { type: ['string', 'null'] },
    path: { type: 'string' },
    target: { type: ['string', 'null'] },
    status: { type: 'integer' },
    code: { type: ['string', 'null'] },
  },
} as const;

// ---- the cluster's members, the caller, the visualizer's feed ------------------------------------

export const orcMember = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    pid: { type: 'integer' },
    host: { type: 'string' },
    since: { type: 'number', description: 'milliseconds since the epoch' },
    shards: { type: 'array', items: { type: 'integer' }, description: 'the shards it owns' },
  },
} as const;

export const shardOwners = {
  type: 'object',
  description: 'shard number → the orc that owns it, or null while none does',
  additionalProperties: { type: ['string', 'null'] },
} as const;

export const whoami = {
  type: 'object',
  properties: { token_id: { type: 'string' }, project: { type: 'string' }, role: { type: 'string', enum: ['admin', 'member', 'reader'] } },
} as const;

export const streamTicket = {
  type: 'object',
  properties: {
    ticket: { type: 'string', description: 'give it as ?ticket= to an event stream (EventSource cannot send a header)' },
    expires_at: { type: 'number', description: 'milliseconds since the epoch' },
  },
} as const;

export const feedStats = {
  type: 'object',
  properties: {
    streams: { type: 'integer' },
    tokens: { type: 'integer' },
    paths: { type: 'integer' },
    listeners: { type: 'integer' },
    armed: { type: 'integer' },
  },
} as const;
