// What the pages show, derived from the API's JSON: each chart node's status and the timeline of a
// work unit's steps. Pure functions (no DOM), so they are unit-tested without a browser.
import type { Chart } from './statechart.js';
import { TERMINAL_STATES as TERMINAL, type WorkUnitState } from '../common/vocabulary.js';

export interface StepDoneView {
  name: string;
  time_to_completion_ms: number;
  completed_at: string | null;
}

export interface ErrorView {
  code: string;
  message: string;
  /** NO_VALID_HOST: how many computes each placement filter removed. */
  rejected?: Record<string, number>;
}

/** GET /v1/work-units/:id, plus updated_at from the UI feed. */
export interface WorkUnitView {
  id: string;
  kind: string;
  state: WorkUnitState;
  server_id: string;
  compute_id: string | null;
  attempts: number;
  steps_completed: StepDoneView[];
  steps_left: string[];
  error?: ErrorView;
  created_at: string | null;
  updated_at?: string | null;
  finished_at: string | null;
}

export interface ServerView {
  id: string;
  name: string;
  status: string;
  compute_id: string | null;
  flavor: { vcpus: number; ram_mb: number; disk_gb: number };
  labels: string[];
  zone: string | null;
  task: string | null;
  created_at: string | null;
  last_error?: ErrorView;
  /** In GET /v1/servers/:id only: whether its compute serves a console. */
  console?: boolean;
}

export const TERMINAL_STATES: ReadonlySet<string> = new Set(TERMINAL);

/**
 * pending: not reached; current: where the unit is now; done: completed (a step) or reached (a
 * final state); failed: the step that failed, or FAILED itself once reached.
 */
export type NodeStatus = 'pending' | 'current' | 'done' | 'failed';

export interface NodeView {
  status: NodeStatus;
  /** True for exactly one node: where the unit's machine is now. */
  current: boolean;
  /** One short line under the state's name: a duration, "running", an error code. */
  detail: string | null;
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}

const time = (iso: string | null | undefined): number | null => {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
};

const STEP_FAILED = /^step (\S+) failed:/;

/** The step a failed unit failed in, or null when it failed outside any step (e.g. NO_VALID_HOST). */
export function failedStep(unit: WorkUnitView, steps: readonly string[]): string | null {
  if (unit.state !== 'FAILED' || !unit.error) return null;
  const named = STEP_FAILED.exec(unit.error.message)?.[1];
  if (named && steps.includes(named)) return named;
  // The compute died mid-unit: the first step not completed was the one running.
  if (unit.error.code === 'COMPUTE_LOST' && unit.steps_completed.length > 0) return unit.steps_left[0] ?? null;
  return null;
}

/** Each chart node's status for this unit. The chart is the unit's own kind's machine. */
export function unitNodes(chart: Chart, unit: WorkUnitView): Map<string, NodeView> {
  const steps = chart.nodes.filter((n) => n.kind === 'step').map((n) => n.id);
  const done = new Map(unit.steps_completed.map((s) => [s.name, s]));
  const failed = failedStep(unit, steps);
  const running = unit.state === 'RUNNING' ? (unit.steps_left[0] ?? null) : null;
  const waiting = unit.state === 'PENDING' || unit.state === 'SCHEDULED';
  const out = new Map<string, NodeView>();
  for (const n of chart.nodes) {
    let v: NodeView = { status: 'pending', current: false, detail: null };
    if (n.kind === 'transient') {
      if (waiting) {
        v = {
          status: 'current',
          current: true,
          detail: unit.state === 'SCHEDULED' && unit.compute_id ? `scheduled on ${unit.compute_id}` : 'awaiting placement',
        };
      } else if (unit.state === 'FAILED' && failed === null && unit.steps_completed.length === 0) {
        v = { status: 'failed', current: false, detail: unit.error?.code ?? 'failed' };
      } else {
        v = { status: 'done', current: false, detail: null };
      }
    } else if (n.kind === 'step') {
      const d = done.get(n.id);
      if (d) v = { status: 'done', current: false, detail: formatMs(d.time_to_completion_ms) };
      else if (n.id === running) v = { status: 'current', current: true, detail: 'running' };
      else if (n.id === failed) v = { status: 'failed', current: false, detail: unit.error?.code ?? 'failed' };
    } else if (n.id === unit.state) {
      v = { status: n.id === 'FAILED' ? 'failed' : 'done', current: true, detail: unit.finished_at ? 'finished' : null };
    }
    out.set(n.id, v);
  }
  return out;
}

export interface TimelineRow {
  name: string;
  status: NodeStatus;
  /** ms after the unit was created; null when it has not started. */
  startMs: number | null;
  durationMs: number | null;
  /** Still growing: the row ends "now". */
  live: boolean;
}

/**
 * The unit's history on one time axis from its creation: the wait for placement, then each step.
 * `now` is the server's clock (the feed sends it), so live rows grow without clock skew.
 */
export function timeline(unit: WorkUnitView, steps: readonly string[], now: number): { rows: TimelineRow[]; totalMs: number } {
  const t0 = time(unit.created_at) ?? now;
  const end = time(unit.finished_at);
  const rows: TimelineRow[] = [];
  const completed = steps
    .map((s) => unit.steps_completed.find((c) => c.name === s))
    .filter((c): c is StepDoneView => c !== undefined);
  const firstDone = completed[0];
  const firstStart = firstDone ? (time(firstDone.completed_at) ?? t0) - firstDone.time_to_completion_ms : null;
  const lastDone = completed[completed.length - 1];
  // When the step in progress started: the last completion, or the intake (updated_at) before any.
  const currentStart = lastDone ? time(lastDone.completed_at) : (time(unit.updated_at) ?? null);

  const waiting = unit.state === 'PENDING' || unit.state === 'SCHEDULED';
  const placedAt = firstStart ?? (unit.state === 'RUNNING' ? currentStart : null) ?? (waiting ? now : end ?? now);
  rows.push({
    name: 'placement',
    status: waiting ? 'current' : unit.state === 'FAILED' && completed.length === 0 && failedStep(unit, steps) === null ? 'failed' : 'done',
    startMs: 0,
    durationMs: Math.max(0, placedAt - t0),
    live: waiting,
  });

  const failed = failedStep(unit, steps);
  for (const s of steps) {
    const d = unit.steps_completed.find((c) => c.name === s);
    if (d) {
      const at = time(d.completed_at) ?? t0;
      rows.push({ name: s, status: 'done', startMs: at - d.time_to_completion_ms - t0, durationMs: d.time_to_completion_ms, live: false });
    } else if (unit.state === 'RUNNING' && unit.steps_left[0] === s && currentStart !== null) {
      rows.push({ name: s, status: 'current', startMs: currentStart - t0, durationMs: Math.max(0, now - currentStart), live: true });
    } else if (s === failed && currentStart !== null) {
      rows.push({ name: s, status: 'failed', startMs: currentStart - t0, durationMs: Math.max(0, (end ?? now) - currentStart), live: false });
    } else {
      rows.push({ name: s, status: 'pending', startMs: null, durationMs: null, live: false });
    }
  }
  const totalMs = Math.max(1, ...rows.map((r) => (r.startMs ?? 0) + (r.durationMs ?? 0)), (end ?? (TERMINAL_STATES.has(unit.state) ? t0 : now)) - t0);
  return { rows, totalMs };
}
