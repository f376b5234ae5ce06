// The compute's self/ directory and liveness: capacity published under the seed's leaf names,
// the ephemeral `alive` node, and self/hypervisor, what libvirt itself reports.
import os from 'node:os';
import { isZkError } from '../zk/client.js';
import { ZERO, type AliveRecord } from '../common/model.js';
import { vmIdOfDomain } from './steps.js';
import { freeOf, type ComputeContext } from './context.js';

export class SelfPublisher {
  private hvTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly c: ComputeContext,
    /** Least time between two writes of self/hypervisor (default 200 ms). */
    private readonly hypervisorReportMs = 200,
  ) {}

  /** The compute's directories, its capacity leaves, and self/free if it has none yet. */
  async publish(): Promise<void> {
    const { zk, paths, id, capacity: cap } = this.c;
    for (const dir of [paths.self(id), paths.nextTasks(id), paths.activeTasks(id), paths.managing(id)]) await zk.mkdirp(dir);
    await zk.mkdirp(`${paths.self(id)}/network`);
    const leaves: Array<[string, unknown]> = [
      [paths.selfCapacity(id), cap],
      [`${paths.self(id)}/ram`, cap.ram_mb],
      [`${paths.self(id)}/cpu`, cap.vcpus],
      [`${paths.self(id)}/disk`, cap.disk_gb],
      [`${paths.self(id)}/network/max_bandwidth`, cap.bandwidth_mbps],
      // What runs the guests (kvm, tcg, or the test driver's records), and where their consoles are read.
      [`${paths.self(id)}/accel`, this.c.guest?.accel ?? 'test'],
      ...(this.c.guest ? ([[`${paths.self(id)}/console`, this.c.guest.consoleUrl]] as Array<[string, unknown]>) : []),
    ];
    for (const [p, v] of leaves) {
      if (!(await zk.createIfAbsent(p, v))) await zk.set(p, v, -1);
    }
    // A console server left from an earlier life of this id on a real hypervisor is gone now.
    if (!this.c.guest) await zk.remove(`${paths.self(id)}/console`).catch((e) => { if (!isZkError(e, 'NO_NODE')) throw e; });
    await zk.createIfAbsent(paths.selfFree(id), freeOf(cap, ZERO));
  }

  /**
   * The ephemeral liveness node. One left by our previous (dead) session is replaced in the same
   * transaction, so watchers never see the compute vanish (which would mark its VMs LOST).
   */
  async claimAlive(): Promise<void> {
    const { zk, paths, id, log } = this.c;
    const me: AliveRecord = { pid: process.pid, host: os.hostname(), started_at: Date.now() };
    for (;;) {
      const st = await zk.exists(paths.alive(id));
      try {
        if (!st) await zk.create(paths.alive(id), me, 'ephemeral');
        else {
          log.warn('replacing a liveness node left by an earlier session', { owner: st.ephemeralOwner });
          await zk.txn().remove(paths.alive(id), st.version).create(paths.alive(id), me, 'ephemeral').commit();
        }
        return;
      } catch (e) {
        if (!isZkError(e, 'NODE_EXISTS') && !isZkError(e, 'NO_NODE') && !isZkError(e, 'BAD_VERSION')) throw e;
      }
    }
  }

  /**
   * self/hypervisor: what libvirt itself reports (domains by state), so operators and tests can
   * check that libvirt and managing/ agree. Debounced: at most one write per hypervisorReportMs.
   */
  scheduleHypervisorReport(): void {
    if (this.hvTimer || this.stopped) return;
    this.hvTimer = setTimeout(() => {
      this.hvTimer = undefined;
      this.reportHypervisor().catch((err) => this.c.log.warn('could not publish self/hypervisor', { err }));
    }, this.hypervisorReportMs);
  }

  async reportHypervisor(): Promise<void> {
    const { zk, paths, id, hv } = this.c;
    const domains = (await hv.list()).filter((d) => vmIdOfDomain(d.name) !== null);
    const byState: Record<string, number> = {};
    for (const d of domains) byState[d.state] = (byState[d.state] ?? 0) + 1;
    const value = { uri: hv.uri, domains: domains.length, by_state: byState, at: Date.now() };
    const p = `${paths.self(id)}/hypervisor`;
    if (!(await zk.createIfAbsent(p, value))) await zk.set(p, value, -1);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.hvTimer);
  }
}
