// Own-write tracking for persistent watches: which notifications this session caused itself.

/**
 * Tells a persistent watch's notifications caused by this session's own writes from others'.
 * ZooKeeper sends a session the notification of its own write before the write's reply, so while
 * any own write is open its notifications are counted instead of read; once the last one settles,
 * a read is due only if more arrived than the committed writes explain.
 */
export class OwnWrites {
  private open = 0;
  private events = 0;
  private explained = 0;

  begin(): void {
    this.open++;
  }

  /** A notification: true if an own write is open (it is counted; no read now). */
  absorb(): boolean {
    if (this.open === 0) return false;
    this.events++;
    return true;
  }

  /** An own write settled (`changes` notifications if it committed); true if a read is now due. */
  end(committed: boolean, changes = 1): boolean {
    if (this.open === 0) return false;
    if (committed) this.explained += changes;
    if (--this.open > 0) return false;
    const unexplained = this.events > this.explained;
    this.events = this.explained = 0;
    return unexplained;
  }
}
