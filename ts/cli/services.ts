// Long-running services (api, orc, compute) share one lifecycle: connect, start, and on session
// expiry (LOST) drop everything and start again on a fresh session; stop cleanly on SIGINT/SIGTERM.
import { Zk } from '../zk/client.js';
import { Paths } from '../zk/paths.js';
import type { Logger } from '../common/log.js';

export interface Service {
  stop(): Promise<void>;
}

export interface SessionOptions {
  zk: string;
  root: string;
  sessionTimeoutMs: number;
  log: Logger;
}

/** Runs `make` on a live session; re-runs it on a new session whenever the old one expires. */
export async function runWithSession(
  o: SessionOptions,
  make: (zk: Zk, paths: Paths) => Promise<Service>,
): Promise<void> {
  const paths = new Paths(o.root);
  let current: { zk: Zk; svc: Service } | undefined;
  let stopping = false;
  let restarting = false;

  const startOnce = async (): Promise<void> => {
    const zk = await Zk.connect(o.zk, { sessionTimeoutMs: o.sessionTimeoutMs });
    zk.on('state', (s: string) => {
      o.log.info('zookeeper connection', { state: s });
      if (s === 'LOST' && !stopping && !restarting) void restart();
    });
    const svc = await make(zk, paths);
    current = { zk, svc };
  };

  const restart = async (): Promise<void> => {
    restarting = true;
    o.log.warn('session expired: dropping everything and starting on a new session');
    const old = current;
    current = undefined;
    await old?.svc.stop().catch(() => {});
    await old?.zk.close().catch(() => {});
    for (let attempt = 1; !stopping; attempt++) {
      try {
        await startOnce();
        break;
      } catch (err) {
        o.log.error('restart failed; retrying', { attempt, err });
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * attempt)));
      }
    }
    restarting = false;
  };

  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    o.log.info('stopping', { signal });
    await current?.svc.stop().catch((err) => o.log.error('stop failed', { err }));
    // What this process's current session cost ZooKeeper (benchmarks sum these over processes).
    if (current) o.log.info('zk counters', { ...current.zk.counters });
    await current?.zk.close().catch(() => {});
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  await startOnce();
}
