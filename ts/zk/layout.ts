// The seed's directory shapes, as lists of (relative path, value). One function per directory kind,
// so the transaction that creates a directory and the one that removes it can never disagree.
import type { Consumes, ManagedRecord, TaskRecord } from '../common/model.js';
import type { CompletedStep } from '../actors/work-unit.js';
import { stepsOf } from '../actors/kinds.js';
import type { Txn } from './txn.js';

export type Entry = readonly [rel: string, value: unknown];

function consumesEntries(c: Consumes): Entry[] {
  return [
    ['consumes', undefined],
    ['consumes/cpu', c.vcpus],
    ['consumes/ram', c.ram_mb],
    ['consumes/disk', c.disk_gb],
    ['consumes/bandwidth', c.bandwidth_mbps],
  ];
}

/** next_tasks/<wu>/: kind, consumes/. */
export function nextTaskEntries(t: TaskRecord): Entry[] {
  return [['', t], ['kind', t.kind], ...consumesEntries(t.consumes)];
}

/** active_tasks/<wu>/: kind, birthed_on, steps_left/<step>, steps_completed/<step>/time_to_completion, consumes/. */
export function activeTaskEntries(t: TaskRecord, completed: readonly CompletedStep[]): Entry[] {
  const done = new Set(completed.map((c) => c.name));
  const { unit: _claimed, ...task } = t; // the claim's copy of the unit is for the intake only
  const out: Entry[] = [
    ['', task],
    ['kind', t.kind],
    ['birthed_on', t.birthed_on],
    ['steps_left', undefined],
  ];
  for (const s of stepsOf(t.kind)) if (!done.has(s)) out.push([`steps_left/${s}`, undefined]);
  out.push(['steps_completed', undefined]);
  for (const c of completed) {
    out.push([`steps_completed/${c.name}`, undefined], [`steps_completed/${c.name}/time_to_completion`, c.time_to_completion_ms]);
  }
  out.push(...consumesEntries(t.consumes));
  return out;
}

/** managing/<vm>/: kind, birthed_on, consumes/, status. */
export function managedEntries(m: ManagedRecord): Entry[] {
  return [['', m], ['kind', m.kind], ['birthed_on', m.birthed_on], ...consumesEntries(m.consumes), ['status', m.status]];
}

const join = (base: string, rel: string): string => (rel ? `${base}/${rel}` : base);

export function createEntries(txn: Txn, base: string, entries: readonly Entry[]): Txn {
  for (const [rel, value] of entries) txn.create(join(base, rel), value);
  return txn;
}

/** Removes exactly the listed nodes, children first. */
export function removeEntries(txn: Txn, base: string, entries: readonly Entry[]): Txn {
  for (const [rel] of [...entries].reverse()) txn.remove(join(base, rel));
  return txn;
}
