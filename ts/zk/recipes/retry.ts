// The bound on optimistic read-modify-write loops: read, build a versioned write, commit; on a
// version conflict (someone wrote in between) read again. Each conflict means another writer
// made progress, so a handful in a row is normal under load; an endless run of them is a bug
// (two writers undoing each other) and must surface, not spin.

/** Attempts in a row lost to concurrent writers before giving up. */
export const CONFLICT_RETRIES = 50;

export class ConflictRetriesExhausted extends Error {
  override readonly name = 'ConflictRetriesExhausted';
  constructor(
    readonly what: string,
    readonly attempts: number,
  ) {
    super(`${what}: gave up after ${attempts} attempts in a row, each lost to a concurrent write (version conflict)`);
  }
}

/**
 * Counts the attempts of one read-modify-write loop; meant as the loop's update clause, so that
 * every `continue` (a conflict: read again) counts one:
 *
 *     for (const conflicts = new ConflictRetries('recompute self/free'); ; conflicts.again()) {
 *       const cur = await zk.get(path);
 *       try { await zk.set(path, next(cur), cur.stat.version); return; }
 *       catch (e) { if (isZkError(e, 'BAD_VERSION')) continue; throw e; }
 *     }
 */
export class ConflictRetries {
  private attempt = 1;

  constructor(
    readonly what: string,
    readonly max = CONFLICT_RETRIES,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`conflict retries must be a positive integer, got ${max}`);
  }

  /** How many attempts have begun. */
  get attempts(): number {
    return this.attempt;
  }

  /** One more attempt; throws ConflictRetriesExhausted once `max` have been made. */
  again(): void {
    if (this.attempt >= this.max) throw new ConflictRetriesExhausted(this.what, this.attempt);
    this.attempt++;
  }
}
