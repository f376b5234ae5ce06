// A statechart as nodes and edges, read from an XState machine definition itself (the same one the
// compute and the API run), so the picture can never drift from the code. Pure: no DOM, no layout.
import type { AnyStateMachine } from 'xstate';

export type NodeKind = 'transient' | 'step' | 'final' | 'state';
export type EdgeKind = 'always' | 'done' | 'error' | 'event';

export interface ChartNode {
  /** The state's key in the machine (a step name, SUCCEEDED, ACTIVE, ...). */
  id: string;
  kind: NodeKind;
  initial: boolean;
  /** What the state invokes (the work unit's steps invoke `runStep`). */
  invokes: string[];
}

export interface ChartEdge {
  id: string;
  source: string;
  target: string;
  kind: EdgeKind;
  /** Event names, `done`/`error` of an invoked actor, or the guard of an eventless transition. */
  labels: string[];
}

export interface Chart {
  machineId: string;
  initial: string | null;
  nodes: ChartNode[];
  edges: ChartEdge[];
}

// Internal event types XState v5 gives an invoked actor's completion and failure.
const DONE_ACTOR = 'xstate.done.actor.';
const ERROR_ACTOR = 'xstate.error.actor.';

interface TransitionLike {
  eventType: string | null;
  target?: ReadonlyArray<{ key: string }> | undefined;
  guard?: unknown;
}

interface StateNodeLike {
  key: string;
  type: string;
  states: Record<string, StateNodeLike>;
  transitions: Map<string, TransitionLike[]>;
  always?: TransitionLike[] | undefined;
  invoke: ReadonlyArray<{ src: unknown }>;
}

function guardName(guard: unknown): string | null {
  if (!guard) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && typeof (guard as { type?: unknown }).type === 'string') return (guard as { type: string }).type;
  if (typeof guard === 'function') return guard.name || 'guard';
  return 'guard';
}

function edgeOf(eventType: string | null, guard: unknown): { kind: EdgeKind; label: string } {
  const g = guardName(guard);
  if (eventType === null || eventType === '') return { kind: 'always', label: g ? `[${g}]` : 'always' };
  if (eventType.startsWith(DONE_ACTOR)) return { kind: 'done', label: g ? `done [${g}]` : 'done' };
  if (eventType.startsWith(ERROR_ACTOR)) return { kind: 'error', label: g ? `error [${g}]` : 'error' };
  return { kind: 'event', label: g ? `${eventType} [${g}]` : eventType };
}

/**
 * The top-level states of `machine` and every transition between them. Transitions with the same
 * source, target and kind become one edge carrying all their labels (ACTIVE → ACTIVE on STARTED
 * and REBOOTED is one loop), so the drawing stays readable without hiding any transition.
 */
export function chartOf(machine: AnyStateMachine): Chart {
  const root = machine.root as unknown as StateNodeLike & { config: { initial?: unknown } };
  const initial = typeof root.config.initial === 'string' ? root.config.initial : null;
  const nodes: ChartNode[] = [];
  const edges = new Map<string, ChartEdge>();

  const add = (source: string, t: TransitionLike): void => {
    const { kind, label } = edgeOf(t.eventType, t.guard);
    for (const target of t.target ?? []) {
      const id = `${source}->${target.key}:${kind}`;
      const e = edges.get(id);
      if (e) {
        if (!e.labels.includes(label)) e.labels.push(label);
      } else {
        edges.set(id, { id, source, target: target.key, kind, labels: [label] });
      }
    }
  };

  for (const [key, s] of Object.entries(root.states)) {
    const invokes = s.invoke.map((i) => (typeof i.src === 'string' ? i.src : 'actor'));
    const kind: NodeKind =
      s.type === 'final' ? 'final' : s.always && s.always.length > 0 && s.transitions.size === 0 ? 'transient' : invokes.length > 0 ? 'step' : 'state';
    nodes.push({ id: key, kind, initial: key === initial, invokes });
    for (const t of s.always ?? []) add(key, t);
    for (const ts of s.transitions.values()) for (const t of ts) add(key, t);
  }
  return { machineId: machine.id, initial, nodes, edges: [...edges.values()] };
}
