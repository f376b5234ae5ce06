// Processes started for development and tests die with the process that started them.

/**
 * A `/bin/sh -c` script: `WATCHDOG <label> <parent pid> <command…>` starts a watcher that
 * SIGKILLs the command if the parent vanishes without running its exit hook (SIGKILL, a crash),
 * then execs into the command (same pid), so nothing lingers.
 */
export const WATCHDOG =
  'parent=$1; shift; ' +
  '( while kill -0 $$ 2>/dev/null; do ' +
  'if ! kill -0 "$parent" 2>/dev/null; then kill -9 $$ 2>/dev/null; break; fi; sleep 1; ' +
  'done ) </dev/null >/dev/null 2>&1 & exec "$@"';

/** A set of live processes that `kill` reaches when this process exits. */
export function reapedOnExit<T>(kill: (p: T) => void): Set<T> {
  const live = new Set<T>();
  process.on('exit', () => {
    for (const p of live) kill(p);
  });
  return live;
}
