// The compute's self/ directory and liveness: capacity published under the seed's leaf names,
// the ephemeral `alive` node, and self/hypervisor, what libvirt itself reports.
import os from 'node:os';
import { claimEphemeral } from '../zk/recipes/ephemeral.js';
import { isZkError } from '../zk/errors.js';
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
   * The ephemeral liveness node, claimed before anything of this compute's is touched. One left
   * by a previous session (this compute killed, or a power cut) is waited out until that session
   * expires, never deleted: if it outlives the longest session timeout, another process runs
   * with this id, and this one refuses to start (IdentityInUse) rather than run twice.
   */
  async claimAlive(): Promise<void> {
    const { zk, paths, id, log } = this.c;
    const me: AliveRecord = { pid: process.pid, host: os.hostname(), started_at: Date.now() };
    // Bumping the compute directory's version with it makes each claim a new incarnation: an orc
    // marks VMs LOST only against the incarnation it saw gone (see Orc.markVmsLost).
    await claimEphemeral(zk, paths.alive(id), me, { what: `compute id ${id}`, log, alongWith: (txn) => txn.set(paths.compute(id), undefined, -1) });
  }

  /**
   * self/hypervisor: what libvirt itself reports (domains by state), so operators and tests can
   * check that libvirt and managing/ agree (and which VMs run here). Debounced: at most one write per hypervisorReportMs.
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
    // Which VMs run here by libvirt's own word: the chaos suite checks no VM runs on two computes.
    const running = domains.filter((d) => d.state === 'running').map((d) => vmIdOfDomain(d.name)!).sort();
    const value = { uri: hv.uri, domains: domains.length, by_state: byState, running, at: Date.now() };
    const p = `${paths.self(id)}/hypervisor`;
    if (!(await zk.createIfAbsent(p, value))) await zk.set(p, value, -1);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.hvTimer);
  }
}
