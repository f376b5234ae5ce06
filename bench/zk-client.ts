// The ZooKeeper client's reply path: node-zookeeper-client's own framing (each reply re-copies the
// rest of its chunk) against Quark's (frames split without copying; ts/zk/wire/patches.ts), side by
// side against one standalone ZooKeeper. Each variant runs in its own child process (the framing
// is chosen when the client module loads). A case sends B gets of a small node at once, R times,
// and reports the client's CPU per reply. With backlog, the event loop is held while the server
// answers, so the replies queue in the socket and arrive in full chunks, as they do for a
// session that has fallen behind; only the reading is measured then.
// JSON lines on stdout, one per variant and burst size. First, without a server: the cost of
// encoding one multi() request, the library's jute records against ts/zk/wire/multi.ts.
//   npm run bench:zk-client -- --bursts 1,100,1000,5000 --replies 50000
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);

async function child(variant: string, zkConn: string, bursts: number[], replies: number): Promise<void> {
  if (variant === 'library') {
    // Mark the library's prototype as already framed, so the wrapper leaves its own in place.
    const cm = createRequire(import.meta.url)('node-zookeeper-client/lib/ConnectionManager.js') as { prototype: Record<string, unknown> };
    cm.prototype.__quarkFramed = true;
  }
  const { Zk } = await import('../ts/zk/client.js');
  const zk = await Zk.connect(zkConn);
  const path = `/zk-client-bench-${process.pid}`;
  await zk.create(path, { server_id: 'x'.repeat(36), status: 'ACTIVE', n: 1 });
  for (const burst of bursts) {
    const rounds = Math.max(1, Math.round(replies / burst));
    for (let i = 0; i < Math.min(rounds, 3); i++) await Promise.all(Array.from({ length: burst }, () => zk.get(path))); // warm-up
    for (const backlog of burst >= 100 ? [false, true] : [false]) {
      let cpuUs = 0;
      let wallMs = 0;
      for (let i = 0; i < rounds; i++) {
        const all = Promise.all(Array.from({ length: burst }, () => zk.get(path)));
        if (backlog) {
          // The session falls behind: the requests leave, then the event loop is held until the
          // server has answered them all, so the replies wait in the socket and arrive in full
          // chunks. Only the reading after that is measured.
          await new Promise((r) => setImmediate(r));
          const until = performance.now() + Math.max(20, burst * 0.05);
          while (performance.now() < until) {
            /* held */
          }
        }
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        await all;
        wallMs += performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        cpuUs += cpu.user + cpu.system;
      }
      const n = rounds * burst;
      process.stdout.write(
        JSON.stringify({
          variant,
          burst,
          backlog,
          replies: n,
          client_cpu_us_per_reply: +(cpuUs / n).toFixed(2),
          wall_us_per_reply: +((wallMs * 1000) / n).toFixed(2),
        }) + '\n',
      );
    }
  }
  await zk.remove(path);
  await zk.close();
}

/**
 * Encoding one multi() request like a compute's intake (7 removes, 16 creates with small values,
 * one set of a ~400-byte record): the library's jute records against Quark's encoder.
 */
function encoders(multi: typeof import('../ts/zk/wire/multi.js')): void {
  const acls = (createRequire(import.meta.url)('node-zookeeper-client') as { ACL: { OPEN_ACL_UNSAFE: unknown } }).ACL.OPEN_ACL_UNSAFE;
  const base = '/quark/computes/hc-123/';
  const ops = [
    ...Array.from({ length: 7 }, (_, i) => ({ type: 2, path: `${base}next_tasks/0b7c1c9e-6a43-4d7e-9b1e-3f0f5a2d9c11/n${i}`, version: -1 })),
    ...Array.from({ length: 16 }, (_, i) => ({ type: 1, path: `${base}active_tasks/0b7c1c9e-6a43-4d7e-9b1e-3f0f5a2d9c11/n${i}`, data: Buffer.alloc(12, i), acls, mode: 0 })),
    { type: 5, path: '/quark/work-units/0b7c1c9e-6a43-4d7e-9b1e-3f0f5a2d9c11', data: Buffer.alloc(400, 1), version: 3 },
  ];
  const variants: Record<string, (xid: number) => Buffer> = {
    library: (xid) => multi.encodeMultiByLibrary(xid, ops as never),
    quark: (xid) => multi.encodeMulti(xid, ops as never),
  };
  for (const [variant, encode] of Object.entries(variants)) {
    let bytes = 0;
    for (let i = 0; i < 20_000; i++) bytes += encode(i).length; // warm-up
    const n = 100_000;
    const t0 = process.cpuUsage();
    for (let i = 0; i < n; i++) bytes += encode(i).length;
    const cpu = process.cpuUsage(t0);
    process.stdout.write(JSON.stringify({ case: 'encode_multi', variant, ops: ops.length, bytes: encode(0).length, cpu_us_per_request: +((cpu.user + cpu.system) / n).toFixed(2) }) + '\n');
    if (bytes < 0) throw new Error('unreachable');
  }
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      child: { type: 'string' },
      zk: { type: 'string' },
      bursts: { type: 'string', default: '1,100,1000,5000' },
      replies: { type: 'string', default: '50000' },
    },
  });
  const bursts = (v.bursts as string).split(',').map(Number);
  const replies = Number(v.replies);
  if (bursts.some((b) => !Number.isInteger(b) || b < 1) || !(replies > 0)) throw new Error('--bursts: positive integers; --replies: a positive number');
  if (v.child) return child(v.child as string, v.zk as string, bursts, replies);

  encoders(await import('../ts/zk/wire/multi.js'));
  const { startZooKeeper } = await import('../ts/dev/zookeeper.js');
  const dir = mkdtempSync(join(tmpdir(), 'quark-zk-client-'));
  const zk = await startZooKeeper({ dataDir: join(dir, 'zk'), clientPort: 0 });
  try {
    for (const variant of ['library', 'quark']) {
      const r = spawnSync(process.execPath, [...process.execArgv, SELF, '--child', variant, '--zk', zk.connectionString, '--bursts', bursts.join(','), '--replies', String(replies)], {
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      if (r.status !== 0) throw new Error(`variant ${variant} failed (${r.status ?? r.signal})`);
    }
  } finally {
    await zk.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`[bench:zk-client] failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
