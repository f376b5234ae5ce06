// quark-compute: publishes its directory, takes next_tasks into active_tasks, runs each work
// unit's steps against libvirt (one transaction per step), and keeps managing/ and self/ true.
// Its jobs are separate parts, composed here: self/ (self.ts), reconcile (reconcile.ts), intake
// (intake.ts), the step runner (runner.ts) and the transactions it commits (commits.ts).
import { readConfig } from '../zk/config.js';
import type { ComputeId, ServerId } from '../common/ids.js';
import type { ClusterConfig } from '../common/model.js';
import type { ComputeContext, ManagedVms } from './context.js';
import { SelfPublisher } from './self.js';
import { reconcile } from './reconcile.js';
import { Runner } from './runner.js';
import { Intake } from './intake.js';
import { Fence } from './fence.js';

/** Who the compute is and what it works with (ComputeContext), and how it runs its units. */
export interface ComputeOptions extends ComputeContext {
  shutdownTimeoutMs?: number;
  /** Added before every step's effect: makes work visibly in flight (demos, visualizer, fault tests). */
  stepDelayMs?: number;
  /** Graceful shutdown waits this long for the units in flight (default 30 s). */
  drainTimeoutMs?: number;
  /** Least time between two writes of self/hypervisor (default 200 ms). */
  hypervisorReportMs?: number;
}

export class Compute {
  private readonly managed: ManagedVms = new Map();
  private readonly self: SelfPublisher;
  private readonly runner: Runner;
  private readonly intake: Intake;
  private readonly fence: Fence;
  private config: ClusterConfig | undefined;

  constructor(private readonly o: ComputeOptions) {
    this.self = new SelfPublisher(o, o.hypervisorReportMs);
    this.fence = new Fence(o.zk);
    this.runner = new Runner(o, this.managed, {
      fence: this.fence,
      stepDelayMs: o.stepDelayMs,
      shutdownTimeoutMs: o.shutdownTimeoutMs,
      overcommit: () => this.config?.overcommit,
      shards: () => this.config?.shards,
      ownIntake: (commit) => this.intake.own(commit),
      unitEnded: () => this.self.scheduleHypervisorReport(),
    });
    this.intake = new Intake(o, this.runner);
  }

  get id(): ComputeId {
    return this.o.id;
  }

  async start(): Promise<void> {
    this.config = await readConfig(this.o.zk, this.o.paths);
    await this.self.claimAlive();
    await this.self.publish();
    await reconcile(this.o, this.managed, this.runner);
    await this.self.reportHypervisor();
    this.intake.start();
    this.o.log.info('compute ready', { managing: this.managed.size, resumed: this.runner.size });
  }

  /**
   * Takes no new task and drops the units in flight (their fate is the cluster's once this
   * session is gone), once the libvirt effects under way have ended: a compute started again on
   * a new session (runWithSession) then reconciles against a libvirt nobody else is changing.
   */
  async stop(): Promise<void> {
    this.intake.close();
    this.self.stop();
    this.fence.close();
    await this.runner.stop();
  }

  /**
   * Graceful shutdown's first half: takes no new task, and waits (at most timeoutMs) for the
   * units already running here to finish, so a planned stop does not cut a VM's build in half.
   * Tasks still in next_tasks stay there; when this compute's liveness node goes, their orc
   * places builds elsewhere and fails the rest, as for any lost compute.
   */
  async drain(timeoutMs = this.o.drainTimeoutMs ?? 30_000): Promise<{ finished: number; left: number }> {
    this.intake.close();
    const running = this.runner.running();
    if (running.length === 0) return { finished: 0, left: 0 };
    this.o.log.info('draining: finishing the units in flight', { units: running.length, timeout_ms: timeoutMs });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(running.map((f) => f.done)),
      new Promise((r) => (timer = setTimeout(r, timeoutMs))),
    ]);
    clearTimeout(timer);
    const left = running.filter((f) => this.runner.has(f.wu)).length;
    if (left > 0) this.o.log.warn('drain timed out: units left unfinished', { left });
    return { finished: running.length - left, left };
  }

  /** For tests and `quark zk`: what this compute believes it manages. */
  managedIds(): ServerId[] {
    return [...this.managed.keys()];
  }
}
