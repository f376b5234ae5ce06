// "Run once more afterwards", written once: every re-read, re-check and re-balance in Quark that
// must not run twice at a time, nor miss a request that came while it ran, goes through this.

/**
 * Runs `body` one call at a time: a call while it runs makes it run once more afterwards, so
 * bursts of requests coalesce into at most one extra run. `body` may ask for that extra run
 * itself by returning true (it saw something that its own result may not reflect). `after`
 * follows a burst's last run; an error ends the burst and goes to `onError`. Nothing runs once
 * `stopped()` says so. run() resolves when the burst it started or joined has ended; it never
 * rejects.
 */
export class Coalescer {
  private running = false;
  private again = false;
  private burst: Promise<void> = Promise.resolve();

  constructor(
    private readonly body: () => Promise<boolean | void>,
    private readonly stopped: () => boolean,
    private readonly onError: (err: unknown) => void,
    private readonly after: () => void = () => {},
  ) {}

  /** True while a run is under way (a call now only asks for one more). */
  get busy(): boolean {
    return this.running;
  }

  run(): Promise<void> {
    if (this.stopped()) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.burst;
    }
    this.running = true;
    this.burst = this.loop();
    return this.burst;
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        if ((await this.body()) === true) this.again = true;
      } while (this.again && !this.stopped());
      this.after();
    } catch (e) {
      if (!this.stopped()) this.onError(e);
    } finally {
      this.running = false;
    }
  }
}
