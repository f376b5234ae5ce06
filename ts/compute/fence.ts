// Fencing: a compute acts on libvirt only while it can trust its session. Once the connection is
// SUSPENDED the session may expire unseen, and the orcs would then give its work and VMs to other
// computes: a step begun meanwhile could start a VM that another compute starts too. So no step
// begins until RECONNECTED (the same session: nothing was given away), and none ever again once
// the session is LOST (the compute starts over on a new session, reconciling first).
import type { ConnectionState, Zk } from '../zk/client.js';

/** Thrown to a step that would have begun after the session was lost or the compute stopped. */
export class Fenced extends Error {
  constructor(why: string) {
    super(`fenced: ${why}`);
  }
}

type FenceState = 'open' | 'suspended' | 'fenced';

export class Fence {
  private state: FenceState;
  private why = '';
  private readonly waiters = new Set<{ resolve(): void; reject(e: Error): void }>();
  private readonly onState = (s: ConnectionState): void => {
    if (s === 'SUSPENDED') this.state = this.state === 'fenced' ? 'fenced' : 'suspended';
    else if (s === 'LOST') this.close('the ZooKeeper session expired');
    else if (this.state !== 'fenced') this.open();
  };

  constructor(private readonly zk: Zk) {
    this.state = zk.connected ? 'open' : 'suspended';
    zk.on('state', this.onState);
  }

  /** Whether no step may ever begin again (session lost, or the compute stopped). */
  get fenced(): boolean {
    return this.state === 'fenced';
  }

  /** Resolves at once while the connection is up; waits while it is suspended; throws once fenced. */
  pass(): Promise<void> {
    if (this.state === 'open') return Promise.resolve();
    if (this.state === 'fenced') return Promise.reject(new Fenced(this.why));
    return new Promise((resolve, reject) => this.waiters.add({ resolve, reject }));
  }

  /** For good: every waiting step and every later one is refused. */
  close(why = 'the compute stopped'): void {
    if (this.state === 'fenced') return;
    this.state = 'fenced';
    this.why = why;
    this.zk.off('state', this.onState);
    for (const w of this.waiters) w.reject(new Fenced(why));
    this.waiters.clear();
  }

  private open(): void {
    this.state = 'open';
    for (const w of this.waiters) w.resolve();
    this.waiters.clear();
  }
}
