// Long-running services (api, orc, compute) share one lifecycle: connect, start, and on session
// expiry (LOST) drop everything and start again on a fresh session; stop cleanly on SIGINT/SIGTERM.
import { Zk } from './client.js';
import { Paths } from './paths.js';
import type { Logger } from '../common/log.js';
import { credentialsFromEnv, type Credentials } from './acl.js';

export interface Service {
  stop(): Promise<void>;
  /** Graceful shutdown's first half (SIGINT/SIGTERM only): finish what is in hand. */
  drain?(): Promise<unknown>;
}

export interface SessionOptions {
  zk: string;
  root: string;
  sessionTimeoutMs: number;
  log: Logger;
  /**
   * Stop and exit the process on SIGINT/SIGTERM, and log connection changes and the session's
   * counters at info (default true: one service per process). Off for services embedded by the
   * thousand in one process (hollow computes) and for tests; they log those at debug.
   */
  handleSignals?: boolean;
  connectTimeoutMs?: number;
  /** ZooKeeper credentials (ts/zk/acl.ts); default QUARK_ZK_CREDENTIALS's file; null: none. */
  credentials?: Credentials | null;
  /** A compute's id: its own ZooKeeper identity (derived when the credentials hold the compute key). */
  computeId?: string;
}

/** A service kept running across session expiries. */
export interface SessionRunner<S extends Service> {
  /** The service on the current session (undefined while it is being started again). */
  readonly service: S | undefined;
  readonly zk: Zk | undefined;
  /** How many times the service was started (1 + restarts after session expiry). */
  readonly starts: number;
  stop(): Promise<void>;
}

/** Runs `make` on a live session; re-runs it on a new session whenever the old one expires. */
export async function runWithSession<S extends Service>(
  o: SessionOptions,
  make: (zk: Zk, paths: Paths) => Promise<S>,
): Promise<SessionRunner<S>> {
  const paths = new Paths(o.root);
  let current: { zk: Zk; svc: S } | undefined;
  let stopping = false;
  let restarting: Promise<void> | undefined;
  let starts = 0;
  const alone = o.handleSignals ?? true;
  const note = alone ? o.log.info.bind(o.log) : o.log.debug.bind(o.log);

  // Read once: a restart on a new session authenticates as the same identities.
  const credentials = o.credentials === undefined ? credentialsFromEnv() : o.credentials;
  const startOnce = async (): Promise<void> => {
    const zk = await Zk.connect(o.zk, { sessionTimeoutMs: o.sessionTimeoutMs, connectTimeoutMs: o.connectTimeoutMs, credentials, computeId: o.computeId });
    zk.acl?.addRoot(paths.root);
    zk.on('state', (s: string) => {
      note('zookeeper connection', { state: s });
      if (s === 'LOST' && !stopping && !restarting) restarting = restart().finally(() => (restarting = undefined));
    });
    let svc: S;
    try {
      svc = await make(zk, paths);
    } catch (e) {
      await zk.close().catch(() => {});
      throw e;
    }
    if (stopping) {
      // stop() came while this start was under way: it must not outlive it.
      await svc.stop().catch(() => {});
      await zk.close().catch(() => {});
      return;
    }
    current = { zk, svc };
    starts++;
  };

  const restart = async (): Promise<void> => {
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
  };

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await restarting;
    await current?.svc.stop().catch((err) => o.log.error('stop failed', { err }));
    // What this process's current session cost ZooKeeper (benchmarks sum these over processes).
    if (current) note('zk counters', { ...current.zk.counters });
    await current?.zk.close().catch(() => {});
    current = undefined;
  };
  if (o.handleSignals ?? true) {
    const onSignal = (signal: string) => {
      if (stopping) return;
      o.log.info('stopping', { signal });
      void (async () => {
        await current?.svc.drain?.().catch((err: unknown) => o.log.error('drain failed', { err }));
        await stop();
        process.exit(0);
      })();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  await startOnce();
  return {
    get service() {
      return current?.svc;
    },
    get zk() {
      return current?.zk;
    },
    get starts() {
      return starts;
    },
    stop,
  };
}
