// What the user CLI prints: tables for `-o table`, the JSON shapes for `-o json`, and the step by
// step progress of a work unit. Pure: no I/O, no clock but the one passed in, so each is tested
// on its own (format.test.ts).
import { table } from '../auth/cli.js';

// ---- the API's views, as far as the CLI reads them ------------------------------------------------

export interface ServerView {
  id: string;
  project: string | null;
  name: string;
  status: string;
  compute_id: string | null;
  flavor: { vcpus: number; ram_mb: number; disk_gb: number };
  labels?: string[];
  zone?: string | null;
  task: string | null;
  group?: string | null;
  created_at: string | null;
  last_error?: { code: string; message: string };
  image?: string;
  console?: boolean;
  ports?: Array<{ host_port: number; guest_port: number }>;
}

export interface StepView {
  name: string;
  time_to_completion_ms: number;
  completed_at?: string | null;
}

export interface UnitView {
  id: string;
  project?: string | null;
  kind: string;
  state: string;
  server_id: string;
  compute_id: string | null;
  attempts?: number;
  steps_completed: StepView[];
  steps_left: string[];
  error?: { code: string; message: string };
  created_at: string | null;
  finished_at: string | null;
  updated_at?: string | null;
}

export interface ImageView {
  id: string;
  project: string | null;
  name: string;
  format: string;
  size_bytes: number;
  sha256: string;
  created_at: string | null;
}

export interface ComputeView {
  id: string;
  alive?: boolean;
  cordoned: boolean;
  zone?: string;
  labels?: string[];
  capacity?: { vcpus: number; ram_mb: number; disk_gb: number; bandwidth_mbps?: number };
  free?: { vcpus: number; ram_mb: number; disk_gb: number; bandwidth_mbps?: number };
  managing?: number;
  active_tasks?: number;
  next_tasks?: number;
}

export interface OrcView {
  id: string;
  pid: number;
  host: string;
  since: number;
  shards: number[];
}

// ---- exit codes ---------------------------------------------------------------------------------

/** How `quark` ends: scripts branch on these (`server create --wait`, `unit watch`). */
export const EXIT = {
  OK: 0,
  /** The API refused, could not be reached, or something else went wrong. */
  ERROR: 1,
  /** Bad arguments. */
  USAGE: 2,
  /** The work unit ended FAILED. */
  UNIT_FAILED: 3,
  /** --timeout passed before the work unit ended. */
  TIMEOUT: 4,
} as const;

/** The exit code for how a wait ended. */
export function exitFor(outcome: 'SUCCEEDED' | 'FAILED' | 'timeout' | 'gone'): number {
  if (outcome === 'SUCCEEDED') return EXIT.OK;
  if (outcome === 'FAILED') return EXIT.UNIT_FAILED;
  if (outcome === 'timeout') return EXIT.TIMEOUT;
  return EXIT.ERROR;
}

// ---- tables -------------------------------------------------------------------------------------

const dash = (v: string | null | undefined): string => (v === null || v === undefined || v === '' ? '-' : v);

export function serversTable(rows: ServerView[]): string {
  return table([
    ['ID', 'NAME', 'STATUS', 'COMPUTE', 'VCPUS', 'RAM_MB', 'DISK_GB', 'PROJECT', 'TASK', 'CREATED'],
    ...rows.map((s) => [
      s.id,
      s.name,
      s.status,
      dash(s.compute_id),
      String(s.flavor.vcpus),
      String(s.flavor.ram_mb),
      String(s.flavor.disk_gb),
      dash(s.project),
      dash(s.task),
      dash(s.created_at),
    ]),
  ]);
}

/** `key  value` lines, keys padded to one column; absent values are left out. */
function fields(pairs: Array<[string, string | null | undefined]>): string {
  const shown = pairs.filter((p): p is [string, string] => p[1] !== undefined && p[1] !== null && p[1] !== '');
  const w = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

export function serverDetail(s: ServerView): string {
  return fields([
    ['id', s.id],
    ['name', s.name],
    ['status', s.status],
    ['compute', dash(s.compute_id)],
    ['flavor', `${s.flavor.vcpus} vcpus, ${s.flavor.ram_mb} MB RAM, ${s.flavor.disk_gb} GB disk`],
    ['project', s.project],
    ['zone', s.zone],
    ['labels', s.labels && s.labels.length > 0 ? s.labels.join(',') : undefined],
    ['group', s.group],
    ['image', s.image],
    ['ports', s.ports?.map((p) => `127.0.0.1:${p.host_port}→${p.guest_port}`).join(', ')],
    ['task', dash(s.task)],
    ['console', s.console === undefined ? undefined : s.console ? 'yes (quark server console)' : 'no'],
    ['created', s.created_at],
    ['last error', s.last_error ? `${s.last_error.code}: ${s.last_error.message}` : undefined],
  ]);
}

export function unitsTable(rows: UnitView[]): string {
  return table([
    ['ID', 'KIND', 'STATE', 'SERVER', 'COMPUTE', 'STEPS', 'ERROR', 'CREATED'],
    ...rows.map((u) => [
      u.id,
      u.kind,
      u.state,
      u.server_id,
      dash(u.compute_id),
      `${u.steps_completed.length}/${u.steps_completed.length + u.steps_left.length}`,
      u.error?.code ?? '-',
      dash(u.created_at),
    ]),
  ]);
}

export function unitDetail(u: UnitView): string {
  const head = fields([
    ['id', u.id],
    ['kind', u.kind],
    ['state', u.state],
    ['server', u.server_id],
    ['compute', dash(u.compute_id)],
    ['project', u.project],
    ['attempts', u.attempts === undefined ? undefined : String(u.attempts)],
    ['created', u.created_at],
    ['finished', u.finished_at],
    ['error', u.error ? `${u.error.code}: ${u.error.message}` : undefined],
  ]);
  const steps = [
    ['STEP', 'STATE', 'TIME'],
    ...u.steps_completed.map((s) => [s.name, 'done', `${s.time_to_completion_ms} ms`]),
    ...u.steps_left.map((name, i) => [name, i === 0 && u.state === 'FAILED' ? 'failed' : 'left', '-']),
  ];
  return `${head}\n${table(steps)}`;
}

export function imagesTable(rows: ImageView[]): string {
  return table([
    ['ID', 'NAME', 'FORMAT', 'SIZE', 'SHA256', 'PROJECT', 'CREATED'],
    ...rows.map((i) => [i.id, i.name, i.format, humanBytes(i.size_bytes), i.sha256.slice(0, 12), dash(i.project), dash(i.created_at)]),
  ]);
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const used = (cap: number | undefined, free: number | undefined): string => (cap === undefined ? '-' : `${cap - (free ?? cap)}/${cap}`);

export function computesTable(rows: ComputeView[]): string {
  return table([
    ['ID', 'ALIVE', 'CORDONED', 'ZONE', 'VCPUS', 'RAM_MB', 'DISK_GB', 'VMS', 'TASKS'],
    ...rows.map((c) => [
      c.id,
      c.alive === undefined ? '-' : c.alive ? 'yes' : 'no',
      c.cordoned ? 'yes' : 'no',
      dash(c.zone),
      used(c.capacity?.vcpus, c.free?.vcpus),
      used(c.capacity?.ram_mb, c.free?.ram_mb),
      used(c.capacity?.disk_gb, c.free?.disk_gb),
      String(c.managing ?? 0),
      `${c.active_tasks ?? 0} active, ${c.next_tasks ?? 0} next`,
    ]),
  ]);
}

/** Shard numbers as ranges: [0,1,2,5] → "0-2,5". */
export function shardRanges(shards: readonly number[]): string {
  const s = [...shards].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    out.push(i === j ? String(s[i]) : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return out.join(',') || '-';
}

export function orcsTable(rows: OrcView[]): string {
  return table([
    ['ID', 'HOST', 'PID', 'SINCE', 'SHARDS', 'OWNED'],
    ...rows.map((o) => [o.id, o.host, String(o.pid), new Date(o.since).toISOString(), String(o.shards.length), shardRanges(o.shards)]),
  ]);
}

export function shardsTable(owners: Record<string, string | null>): string {
  const rows = Object.entries(owners).sort(([a], [b]) => Number(a) - Number(b));
  return table([['SHARD', 'OWNER'], ...rows.map(([n, o]) => [n, o ?? '(unowned)'])]);
}

// ---- a work unit's progress ----------------------------------------------------------------------

/** How long, in a short human form: 850 ms, 2.4 s, 3 m 05 s. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, '0')} s`;
}

const since = (iso: string | null | undefined, now: number): number | undefined => (iso ? now - Date.parse(iso) : undefined);

export const MARK = { done: '✓', running: '▸', left: '·', failed: '✗' } as const;

/**
 * The live block `--wait` redraws: a heading with the unit's state, then one line per step
 * (done with its time, the running one, the ones left). `now` is the server's clock (the stream
 * carries it), so elapsed times do not depend on this machine's.
 */
export function renderProgress(u: UnitView, now: number): string[] {
  const total = u.finished_at && u.created_at ? Date.parse(u.finished_at) - Date.parse(u.created_at) : since(u.created_at, now);
  const where = u.compute_id ? ` on ${u.compute_id}` : '';
  const lines = [`${u.kind} ${u.id}  ${u.state}${where}${total === undefined ? '' : `  ${duration(total)}`}`];
  const width = Math.max(0, ...[...u.steps_completed.map((s) => s.name), ...u.steps_left].map((n) => n.length));
  for (const s of u.steps_completed) lines.push(`  ${MARK.done} ${s.name.padEnd(width)}  ${duration(s.time_to_completion_ms)}`);
  const running = u.state === 'SCHEDULED' || u.state === 'RUNNING';
  const lastDone = u.steps_completed.at(-1)?.completed_at ?? u.updated_at ?? null;
  u.steps_left.forEach((name, i) => {
    if (i === 0 && u.state === 'FAILED') lines.push(`  ${MARK.failed} ${name.padEnd(width)}  ${u.error?.code ?? 'failed'}`);
    else if (i === 0 && running && u.compute_id) {
      const t = since(lastDone, now);
      lines.push(`  ${MARK.running} ${name.padEnd(width)}  ${t === undefined ? '…' : `${duration(t)}…`}`);
    } else lines.push(`  ${MARK.left} ${name}`);
  });
  if (u.state === 'PENDING') lines.push('  waiting for an orc to place it');
  if (u.error) lines.push(`  ${u.error.code}: ${u.error.message}`);
  return lines;
}

/**
 * What changed between two views of a unit, as lines for a log that is not a terminal (one line
 * per event, nothing redrawn): a new state, a compute chosen, each step finished, the error.
 */
export function progressLines(prev: UnitView | undefined, next: UnitView): string[] {
  const out: string[] = [];
  if (!prev) out.push(`${next.kind} ${next.id}: ${next.state}${next.compute_id ? ` on ${next.compute_id}` : ''}`);
  else if (prev.state !== next.state || prev.compute_id !== next.compute_id) {
    out.push(`${next.kind} ${next.id}: ${next.state}${next.compute_id ? ` on ${next.compute_id}` : ''}`);
  }
  const before = prev?.steps_completed.length ?? 0;
  for (const s of next.steps_completed.slice(before)) out.push(`  ${MARK.done} ${s.name}  ${duration(s.time_to_completion_ms)}`);
  if (next.error && !prev?.error) out.push(`  ${MARK.failed} ${next.error.code}: ${next.error.message}`);
  return out;
}

/** The last line of a wait, whatever the display. */
export function outcomeLine(outcome: 'SUCCEEDED' | 'FAILED' | 'timeout' | 'gone', u: UnitView | undefined, timeoutMs: number): string {
  if (outcome === 'timeout') return `timed out after ${duration(timeoutMs)} waiting for unit ${u?.id ?? ''} (${u?.state ?? 'unknown'}); it goes on: quark unit watch ${u?.id ?? ''}`.replace(/  +/g, ' ');
  if (outcome === 'gone') return `unit ${u?.id ?? ''} is gone (its record was removed)`;
  const took = u?.finished_at && u.created_at ? ` in ${duration(Date.parse(u.finished_at) - Date.parse(u.created_at))}` : '';
  if (outcome === 'FAILED') return `${u?.kind ?? 'unit'} FAILED${took}: ${u?.error?.code ?? ''} ${u?.error?.message ?? ''}`.trim();
  return `${u?.kind ?? 'unit'} SUCCEEDED${took}`;
}
