// Hollow computes (kubemark's idea): N computes in one process, each with its own ZooKeeper
// session, liveness node, seed directory and private libvirt test-driver state. To the orcs and
// the API they are indistinguishable from N real computes; they exist to test Quark at scale.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../native/libvirt.js';
import type { Zk } from '../zk/client.js';
import { runWithSession, type SessionRunner } from '../zk/session.js';
import type { Logger } from '../common/log.js';
import { asComputeId, type ComputeId } from '../common/ids.js';
import type { ComputeCapacity } from '../common/model.js';
import { Compute } from './compute.js';

export interface HollowOptions {
  count: number;
  /** Compute ids are `<prefix>-<n>`, n from 1. */
  idPrefix: string;
  zk: string;
  root: string;
  sessionTimeoutMs: number;
  /** What each compute offers; libvirt_uri is filled in per compute. */
  capacity: Omit<ComputeCapacity, 'libvirt_uri'>;
  log: Logger;
  stepDelayMs?: number;
  hypervisorReportMs?: number;
  /** How many computes connect and publish at once while the fleet starts (default 64). */
  startConcurrency?: number;
}

/**
 * The libvirt test driver shares one state among every `test:///default` connection of a process,
 * and a compute removes quark domains it does not manage. A node description file instead gives
 * each open connection a fresh private state: one per hollow compute.
 */
export const HOLLOW_NODE_XML = `<node>
  <cpu>
    <nodes>1</nodes><sockets>1</sockets><cores>64</cores><threads>1</threads>
    <active>64</active><mhz>2000</mhz><model>x86_64</model><vendor>Quark</vendor>
  </cpu>
  <memory>268435456</memory>
</node>
`;

export function privateTestDriverUri(file: string): string {
  return `test://${file}`;
}

/** One hollow compute: its own session, restarted on a new one when the old one expires. */
class HollowCompute {
  private runner: SessionRunner<Compute> | undefined;

  constructor(
    readonly id: ComputeId,
    private readonly hv: Hypervisor,
    private readonly o: HollowOptions,
    private readonly log: Logger,
  ) {}

  get zkClient(): Zk | undefined {
    return this.runner?.zk;
  }

  async start(): Promise<void> {
    const { o, hv } = this;
    this.runner = await runWithSession<Compute>(
      // Each member authenticates as itself: the fleet's credentials derive every member's identity.
      { zk: o.zk, root: o.root, sessionTimeoutMs: o.sessionTimeoutMs, log: this.log, handleSignals: false, connectTimeoutMs: 60_000, computeId: this.id },
      async (zk, paths) => {
        const compute = new Compute({
          id: this.id,
          zk,
          paths,
          hv,
          capacity: { ...o.capacity, libvirt_uri: hv.uri },
          log: this.log,
          stepDelayMs: o.stepDelayMs,
          hypervisorReportMs: o.hypervisorReportMs,
        });
        try {
          await compute.start();
        } catch (e) {
          await compute.stop().catch(() => {});
          throw e;
        }
        return compute;
      },
    );
  }

  async stop(): Promise<void> {
    await this.runner?.stop();
    await this.hv.close().catch(() => {});
  }
}

export class HollowFleet {
  private readonly members: HollowCompute[] = [];
  private stopping = false;
  private readonly dir: string;
  private readonly nodeXml: string;

  constructor(private readonly o: HollowOptions) {
    if (!Number.isInteger(o.count) || o.count < 1) throw new Error(`hollow count must be a positive integer, got ${o.count}`);
    this.dir = mkdtempSync(join(tmpdir(), 'quark-hollow-'));
    this.nodeXml = join(this.dir, 'node.xml');
    writeFileSync(this.nodeXml, HOLLOW_NODE_XML);
  }

  get ids(): ComputeId[] {
    return this.members.map((m) => m.id);
  }

  get size(): number {
    return this.members.length;
  }

  /** Transactions, writes and reads of every member's current session, summed. */
  counters(): { txns: number; writes: number; reads: number } {
    const sum = { txns: 0, writes: 0, reads: 0 };
    for (const m of this.members) {
      const c = m.zkClient?.counters;
      if (!c) continue;
      sum.txns += c.txns;
      sum.writes += c.writes;
      sum.reads += c.reads;
    }
    return sum;
  }

  /** Starts every compute, a bounded number at a time; resolves when all are alive. */
  async start(): Promise<void> {
    const width = String(this.o.count).length;
    const ids = Array.from({ length: this.o.count }, (_, i) => asComputeId(`${this.o.idPrefix}-${String(i + 1).padStart(width, '0')}`));
    let next = 0;
    let ready = 0;
    const started = Date.now();
    const worker = async (): Promise<void> => {
      while (next < ids.length && !this.stopping) {
        const id = ids[next++]!;
        const hv = await Hypervisor.open(privateTestDriverUri(this.nodeXml));
        const m = new HollowCompute(id, hv, this.o, this.o.log.child({ compute: id }));
        this.members.push(m);
        await m.start();
        if (++ready % 500 === 0) this.o.log.info('hollow computes ready', { ready, of: ids.length, ms: Date.now() - started });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.startConcurrency ?? 64, ids.length) }, worker));
    this.o.log.info('hollow fleet ready', { computes: ids.length, ms: Date.now() - started });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.members.map((m) => m.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * `quark compute --hollow N`: runs the fleet until SIGINT/SIGTERM, then stops every member
 * (their sessions close, so their liveness nodes go at once) and exits 0. Each member restarts
 * itself on a new session when its own expires, as `runWithSession` does for one compute.
 */
export async function runHollow(o: HollowOptions): Promise<void> {
  const fleet = new HollowFleet(o);
  let stopping: Promise<void> | undefined;
  const shutdown = (signal: string): Promise<void> =>
    (stopping ??= (async () => {
      o.log.info('stopping', { signal, computes: fleet.size });
      const counters = fleet.counters();
      await fleet.stop().catch((err) => o.log.error('stop failed', { err }));
      o.log.info('zk counters', { ...counters, sessions: fleet.size });
      process.exit(0);
    })());
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  try {
    await fleet.start();
  } catch (err) {
    if (stopping) return;
    await fleet.stop().catch(() => {});
    throw err;
  }
}
