// What any bench wants alike: work run a few at a time, and the nearest-rank percentile its
// latency figures are given in.

/** Runs `work(i)` for every i < n in order of i, at most `c` at once. */
export async function pool(n: number, c: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(c, n) }, async () => {
      while (next < n) await work(next++);
    }),
  );
}

/** The p-th percentile of `sorted` (ascending) by nearest rank: a value it holds; undefined if empty. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))];
}
