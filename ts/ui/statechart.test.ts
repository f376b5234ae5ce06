// The visualizer's pure parts: the chart read from the real machines, node statuses and the
// timeline derived from unit records, and the ELK layout (run in Node, as the browser runs it).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import ElkModule from 'elkjs/lib/elk.bundled.js';
import type { ELK as ElkApi } from 'elkjs/lib/elk-api.js';
import { WORK_KINDS, stepsOf } from '../actors/kinds.js';
import { workUnitMachine } from '../actors/work-unit.js';
import { VM_STATUSES, vmMachine } from '../actors/vm.js';
import { chartOf } from './statechart.js';
import { layoutChart } from './layout.js';
import { failedStep, formatMs, timeline, unitNodes, type WorkUnitView } from './model.js';

// A CommonJS module: under NodeNext its default import types as the module, not the class.
const ELK = ElkModule as unknown as new () => ElkApi;

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();

function unit(over: Partial<WorkUnitView>): WorkUnitView {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    kind: 'build',
    state: 'PENDING',
    server_id: '00000000-0000-4000-8000-000000000002',
    compute_id: null,
    attempts: 0,
    steps_completed: [],
    steps_left: [...stepsOf('build')],
    created_at: at(0),
    updated_at: at(0),
    finished_at: null,
    ...over,
  };
}

describe('chartOf reads the machines themselves', () => {
  it.each(WORK_KINDS)('a %s unit: resume, one state per step, SUCCEEDED and FAILED, wired as the machine is', (kind) => {
    const steps = stepsOf(kind);
    const c = chartOf(workUnitMachine(kind));
    expect(c.machineId).toBe(`work-unit.${kind}`);
    expect(c.initial).toBe('resume');
    expect(c.nodes.map((n) => [n.id, n.kind])).toEqual([
      ['resume', 'transient'],
      ...steps.map((s) => [s, 'step']),
      ['SUCCEEDED', 'final'],
      ['FAILED', 'final'],
    ]);
    for (const n of c.nodes.filter((n) => n.kind === 'step')) expect(n.invokes).toEqual(['runStep']);
    const edge = (from: string, to: string) => c.edges.find((e) => e.source === from && e.target === to);
    steps.forEach((s, i) => {
      expect(edge(s, steps[i + 1] ?? 'SUCCEEDED')).toMatchObject({ kind: 'done', labels: ['done'] });
      expect(edge(s, 'FAILED')).toMatchObject({ kind: 'error', labels: ['error'] });
      expect(edge('resume', s)).toMatchObject({ kind: 'always', labels: ['[isNext]'] });
    });
    expect(edge('resume', 'SUCCEEDED')).toMatchObject({ kind: 'always' });
    expect(c.edges).toHaveLength(steps.length * 3 + 1);
  });

  it('the VM lifecycle: every status a node, every event an edge, loops merged', () => {
    const c = chartOf(vmMachine);
    expect(c.nodes.map((n) => n.id).sort()).toEqual([...VM_STATUSES].sort());
    expect(c.nodes.find((n) => n.id === 'DELETED')?.kind).toBe('final');
    expect(c.initial).toBe('BUILDING');
    const loop = c.edges.find((e) => e.source === 'ACTIVE' && e.target === 'ACTIVE');
    expect(loop?.labels.sort()).toEqual(['REBOOTED', 'STARTED']);
    expect(c.edges.find((e) => e.source === 'BUILDING' && e.target === 'ACTIVE')?.labels).toEqual(['BUILT']);
    // Every transition of the machine is drawn once.
    let transitions = 0;
    for (const s of Object.values(vmMachine.root.states)) for (const ts of s.transitions.values()) transitions += ts.length;
    expect(c.edges.reduce((n, e) => n + e.labels.length, 0)).toBe(transitions);
  });
});

describe('node statuses follow the unit record', () => {
  const chart = chartOf(workUnitMachine('build'));
  const statuses = (u: WorkUnitView) => Object.fromEntries([...unitNodes(chart, u)].map(([k, v]) => [k, v.status]));
  const current = (u: WorkUnitView) => [...unitNodes(chart, u)].filter(([, v]) => v.current).map(([k]) => k);

  it('PENDING: waiting in resume for placement', () => {
    const u = unit({});
    expect(current(u)).toEqual(['resume']);
    expect(unitNodes(chart, u).get('resume')?.detail).toBe('awaiting placement');
    expect(statuses(u).allocate_vcpu).toBe('pending');
  });

  it('RUNNING: completed steps show their time, the next one is current', () => {
    const u = unit({
      state: 'RUNNING',
      compute_id: 'compute-1',
      steps_completed: [{ name: 'allocate_vcpu', time_to_completion_ms: 1234, completed_at: at(2000) }],
      steps_left: ['allocate_storage', 'define', 'start'],
    });
    expect(statuses(u)).toEqual({
      resume: 'done',
      allocate_vcpu: 'done',
      allocate_storage: 'current',
      define: 'pending',
      start: 'pending',
      SUCCEEDED: 'pending',
      FAILED: 'pending',
    });
    expect(unitNodes(chart, u).get('allocate_vcpu')?.detail).toBe('1.23 s');
    expect(current(u)).toEqual(['allocate_storage']);
  });

  it('FAILED in a step: that step shows the error, FAILED is where the unit is', () => {
    const u = unit({
      state: 'FAILED',
      compute_id: 'compute-1',
      steps_completed: [{ name: 'allocate_vcpu', time_to_completion_ms: 5, completed_at: at(100) }],
      steps_left: ['allocate_storage', 'define', 'start'],
      error: { code: 'NO_CAPACITY', message: 'step allocate_storage failed: compute compute-1 would exceed its disk_gb' },
      finished_at: at(150),
    });
    expect(failedStep(u, stepsOf('build'))).toBe('allocate_storage');
    expect(statuses(u)).toMatchObject({ allocate_vcpu: 'done', allocate_storage: 'failed', define: 'pending', FAILED: 'failed' });
    expect(unitNodes(chart, u).get('allocate_storage')?.detail).toBe('NO_CAPACITY');
    expect(current(u)).toEqual(['FAILED']);
  });

  it('NO_VALID_HOST fails before any step: resume carries the error', () => {
    const u = unit({
      state: 'FAILED',
      error: { code: 'NO_VALID_HOST', message: 'no compute can hold 1000 vcpus: 3 considered; fits removed 3', rejected: { fits: 3 } },
      finished_at: at(40),
    });
    expect(statuses(u)).toMatchObject({ resume: 'failed', allocate_vcpu: 'pending', FAILED: 'failed' });
    expect(unitNodes(chart, u).get('resume')?.detail).toBe('NO_VALID_HOST');
  });

  it('SUCCEEDED: every step done, SUCCEEDED current', () => {
    const u = unit({
      state: 'SUCCEEDED',
      steps_completed: stepsOf('build').map((name, i) => ({ name, time_to_completion_ms: 10, completed_at: at(100 + 10 * i) })),
      steps_left: [],
      finished_at: at(130),
    });
    expect(current(u)).toEqual(['SUCCEEDED']);
    expect(Object.values(statuses(u)).filter((s) => s === 'done')).toHaveLength(6);
    expect(statuses(u).FAILED).toBe('pending');
  });
});

describe('timeline', () => {
  it('places each completed step where it ran and grows the running one to now', () => {
    const u = unit({
      state: 'RUNNING',
      steps_completed: [
        { name: 'allocate_vcpu', time_to_completion_ms: 300, completed_at: at(500) },
        { name: 'allocate_storage', time_to_completion_ms: 200, completed_at: at(700) },
      ],
      steps_left: ['define', 'start'],
      updated_at: at(700),
    });
    const { rows, totalMs } = timeline(u, stepsOf('build'), T0 + 1000);
    expect(rows.map((r) => [r.name, r.status, r.startMs, r.durationMs, r.live])).toEqual([
      ['placement', 'done', 0, 200, false],
      ['allocate_vcpu', 'done', 200, 300, false],
      ['allocate_storage', 'done', 500, 200, false],
      ['define', 'current', 700, 300, true],
      ['start', 'pending', null, null, false],
    ]);
    expect(totalMs).toBe(1000);
  });

  it('formats durations for people', () => {
    expect(formatMs(7)).toBe('7 ms');
    expect(formatMs(1500)).toBe('1.50 s');
    expect(formatMs(12_300)).toBe('12.3 s');
    expect(formatMs(125_000)).toBe('2 min 5 s');
  });
});

describe('layout by ELK', () => {
  it.each([
    ['a build unit', chartOf(workUnitMachine('build'))],
    ['the VM lifecycle', chartOf(vmMachine)],
  ])('%s: every node placed without overlap, every edge routed', async (_what, chart) => {
    const l = await layoutChart(chart, new ELK());
    expect(l.nodes).toHaveLength(chart.nodes.length);
    for (const a of l.nodes) {
      expect(a.x).toBeGreaterThanOrEqual(0);
      expect(a.x + a.width).toBeLessThanOrEqual(l.width);
      for (const b of l.nodes) {
        if (a === b) continue;
        const apart = a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;
        expect(apart, `${a.id} overlaps ${b.id}`).toBe(true);
      }
    }
    for (const e of l.edges) {
      expect(e.points.length, e.id).toBeGreaterThanOrEqual(2);
      expect(e.label?.text).toBe(e.labels.join(', '));
    }
  });

  it('layered top-down: each step of a build below the one before it', async () => {
    const l = await layoutChart(chartOf(workUnitMachine('build')), new ELK(), { direction: 'DOWN' });
    const y = (id: string) => l.nodes.find((n) => n.id === id)!.y;
    const order = ['resume', ...stepsOf('build'), 'SUCCEEDED'];
    for (let i = 1; i < order.length; i++) expect(y(order[i]!)).toBeGreaterThan(y(order[i - 1]!));
  });
});

describe('browser code hygiene', () => {
  it('builds DOM from nodes only: no HTML string sinks anywhere in ts/ui', () => {
    const dir = fileURLToPath(new URL('.', import.meta.url));
    const files = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(d, e.name)) : [join(d, e.name)]));
    const sources = files(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    expect(sources.length).toBeGreaterThan(5);
    for (const f of sources) {
      const text = readFileSync(f, 'utf8');
      expect(text, f).not.toMatch(/\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|new Function|\beval\(/);
      // Nothing is fetched from another origin.
      expect(text, f).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    }
  });
});
