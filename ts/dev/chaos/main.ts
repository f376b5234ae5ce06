// `npm run chaos -- --seed S --runs N [--kinds kill-orc,power-cut] [--keep-logs] [--zk-acl on|off]`:
// the fault suite (run.ts). A JSON line per run on stdout, then the summary line; exits 1 on any
// violation. --zk-acl off runs the clusters without ZooKeeper credentials (every node open).
import { parseArgs } from 'node:util';
import { FAULT_KINDS, type FaultKind } from './plan.js';
import { runChaos } from './run.js';

function positiveInt(v: string, name: string, min = 1): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer of at least ${min}, got ${v}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: '1' },
      runs: { type: 'string', default: '10' },
      kinds: { type: 'string' },
      boots: { type: 'string', default: '12' },
      'session-timeout-ms': { type: 'string', default: '2000' },
      'keep-logs': { type: 'boolean', default: false },
      'zk-acl': { type: 'string', default: 'on' },
    },
  });
  const kinds = values.kinds ? values.kinds.split(',').map((k) => k.trim()) : [...FAULT_KINDS];
  const unknown = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
  if (unknown.length > 0) throw new Error(`unknown fault kind(s) ${unknown.join(', ')}; known: ${FAULT_KINDS.join(', ')}`);
  const acl = values['zk-acl'];
  if (acl !== 'on' && acl !== 'off') throw new Error(`--zk-acl must be on or off, got ${acl}`);
  const { summary } = await runChaos({
    seed: positiveInt(values.seed!, 'seed', 0),
    runs: positiveInt(values.runs!, 'runs'),
    kinds: kinds as FaultKind[],
    boots: positiveInt(values.boots!, 'boots'),
    sessionTimeoutMs: positiveInt(values['session-timeout-ms']!, 'session-timeout-ms', 400),
    keepLogs: values['keep-logs'],
    zkAcl: acl === 'on',
    out: (line) => void process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return summary.violations > 0 ? 1 : 0;
}

// Ctrl-C or a stop: exit through the exit hooks, which kill every process the runs started.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
