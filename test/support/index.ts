// Helpers shared by the integration tests: where the CLI is, the suite's ZooKeeper, unique
// ZooKeeper roots, polling, and child processes that are always cleaned up and whose output is
// shown when a test fails.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, inject } from 'vitest';
import { Zk } from '../../ts/zk/client.js';
import { Launcher, type LaunchedProcess, type LaunchSpec, type Supervision } from '../../ts/dev/cluster.js';

// ---------------------------------------------------------------------------------------------
// Paths

/** The repository root, found from this file's location (test/support/). */
export function repoRoot(): string {
  return fileURLToPath(new URL('../../', import.meta.url));
}

/** The compiled CLI entry, `dist/ts/cli/main.js`; throws with the fix if it has not been built. */
export function quarkBin(): string {
  const bin = join(repoRoot(), 'dist', 'ts', 'cli', 'main.js');
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: build it with scripts/build-if-stale.sh (or npm run build:ts)`);
  }
  return bin;
}

// ---------------------------------------------------------------------------------------------
// ZooKeeper

/** Connection string of the ZooKeeper that test/setup/zookeeper.ts started for this run. */
export function zkConnect(): string {
  return inject('zkConnect');
}

/** The suite's ZooKeeper credentials directory (admin.json, api.json, orc.json, compute-fleet.json). */
export function zkCredentials(): string {
  return inject('zkCredentials');
}

/** A fresh ZooKeeper root path, `/<prefix>-<random>`, so tests sharing one server never meet. */
export function uniqueRoot(prefix = 'quark-test'): string {
  return `/${prefix}-${randomBytes(6).toString('hex')}`;
}

/**
 * For a test file: a session on the suite's ZooKeeper with `root` created, handed to `ready`
 * before the file's tests; after them the root is removed and the session closed.
 */
export function useZkRoot(root: string, ready: (zk: Zk) => void): void {
  let zk: Zk | undefined;
  beforeAll(async () => {
    zk = await Zk.connect(zkConnect());
    await zk.mkdirp(root);
    ready(zk);
  });
  afterAll(async () => {
    await zk?.removeTree(root);
    await zk?.close();
  });
}

/**
 * For a test file: one session on the suite's ZooKeeper, open before its tests; after them, what
 * the tests handed to `cleanup` runs (last first) and the session closes.
 */
export function useZkSession(): { readonly zk: Zk; cleanup(fn: () => Promise<void>): void } {
  let zk: Zk | undefined;
  const undo: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    zk = await Zk.connect(zkConnect());
  });
  afterAll(async () => {
    for (const fn of undo.reverse()) await fn();
    await zk?.close();
  });
  return {
    get zk(): Zk {
      if (!zk) throw new Error('useZkSession: the session is opened in beforeAll');
      return zk;
    },
    cleanup: (fn) => void undo.push(fn),
  };
}

// ---------------------------------------------------------------------------------------------
// Polling

export interface WaitForOptions {
  /** What we are waiting for, in words; it is the timeout error's message. */
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * Calls `fn` until it returns something other than undefined, null or false (a throw counts as
 * "not yet") and resolves with that value; on timeout throws `timed out after … waiting for
 * <what>` with the last error or value seen.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  { what, timeoutMs = 10_000, intervalMs = 50 }: WaitForOptions,
): Promise<Exclude<T, undefined | null | false>> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let last: string;
  for (;;) {
    const remaining = deadline - Date.now();
    try {
      // A hung attempt must not outlive the deadline.
      const value = await Promise.race([
        Promise.resolve().then(fn),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('attempt still pending at the deadline')), Math.max(remaining, 0)).unref(),
        ),
      ]);
      if (value !== undefined && value !== null && value !== false) {
        return value as Exclude<T, undefined | null | false>;
      }
      last = `last value: ${String(value)}`;
    } catch (err) {
      last = `last error: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (Date.now() + intervalMs > deadline) {
      throw new Error(`timed out after ${Date.now() - started} ms waiting for ${what} (${last})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Whether a process with this pid is running (signal 0 probes without signalling). A zombie has
 * exited and only waits to be reaped: an orphan's reaper is pid 1, which in some containers is
 * not an init and reaps late or never, so a zombie counts as gone.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S …"; comm may hold spaces or parentheses, so read after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return existsSync(`/proc/${pid}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes: the cluster launcher (ts/dev/cluster.ts), unsupervised (tests kill on purpose)

export type { ExitInfo } from '../../ts/dev/cluster.js';
/** A child process started by a ProcessGroup. */
export type Child = LaunchedProcess;

export interface SpawnChildOptions {
  /** Name used in failure reports; default the first argument. */
  label?: string;
  /** Added to (and overriding) the test process's environment. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Restart it like `quark up` does; default never (tests kill processes on purpose). */
  supervise?: Supervision;
}

/**
 * Node child processes that belong to one test file, through the cluster launcher. Each runs in
 * its own process group, so stopping it also reaps anything it started; its output is captured
 * for failure reports. None is restarted unless asked (`supervise`).
 */
export class ProcessGroup {
  private readonly launcher: Launcher;
  /** Children started inside the current test (vs. in beforeAll); afterEach stops only these. */
  private testScoped = new Set<Child>();
  private inTest = false;

  constructor(private readonly graceMs = 5_000) {
    this.launcher = new Launcher({ graceMs, supervision: false });
  }

  /** A process as the launcher takes it (a quark subcommand by default), scoped like spawn(). */
  start(spec: LaunchSpec): Child {
    const child = this.launcher.start({ cwd: repoRoot(), ...spec });
    if (this.inTest) this.testScoped.add(child);
    return child;
  }

  /** `node <args…>` with the test process's Node binary. */
  spawn(args: string[], opts: SpawnChildOptions = {}): Child {
    return this.start({
      name: opts.label ?? args[0] ?? 'node',
      script: null,
      args,
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      env: opts.env,
      ...(opts.supervise ? { supervise: opts.supervise } : {}),
    });
  }

  /** `node dist/ts/cli/main.js <args…>`, labelled `quark <subcommand>`. */
  spawnQuark(args: string[], opts: SpawnChildOptions = {}): Child {
    return this.spawn([quarkBin(), ...args], { label: `quark ${args[0] ?? ''}`.trim(), ...opts });
  }

  get all(): readonly Child[] {
    return this.launcher.procs;
  }

  pids(): number[] {
    return this.launcher.procs.map((c) => c.pid);
  }

  /** SIGKILLs one process (a crash, not a shutdown) and waits until it has exited. */
  async kill9(pid: number): Promise<void> {
    const child = this.launcher.procs.find((c) => c.pid === pid);
    if (!child) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // not running
      }
      return;
    }
    child.signal('SIGKILL');
    await child.exited;
  }

  /** SIGTERM, then after the grace period SIGKILL; waits for every child and reaps its group. */
  async stopAll(): Promise<void> {
    await this.launcher.stop();
  }

  async stop(children: readonly Child[]): Promise<void> {
    await this.launcher.stop(children, this.graceMs);
  }

  /** Prints the last lines of each child's output to stderr. */
  dump(children: readonly Child[] = this.launcher.procs, lines = 60): void {
    for (const c of children) {
      const state = c.exit ? `exited ${c.exit.signal ? `by ${c.exit.signal}` : `with code ${c.exit.code}`}` : 'running';
      console.error(`----- ${c.label} (pid ${c.pid}, ${state}): last ${lines} lines -----\n${c.lastLines(lines)}`);
    }
  }

  /** @internal hook plumbing for useProcessGroup */
  beginTest(): void {
    this.inTest = true;
    // Forget children that finished in earlier tests; their reports are no longer needed.
    this.launcher.prune();
    this.testScoped = new Set();
  }

  /** @internal */
  async endTest(): Promise<void> {
    this.inTest = false;
    await this.stop([...this.testScoped]);
  }
}

/**
 * A ProcessGroup wired into the current test file: children spawned inside a test are stopped
 * after it, children spawned in beforeAll after the file, and every child's output tail is
 * printed when a test fails. Call at the top level of a test file or describe block.
 */
export function useProcessGroup(opts: { graceMs?: number } = {}): ProcessGroup {
  const group = new ProcessGroup(opts.graceMs);
  beforeEach((ctx) => {
    group.beginTest();
    // Runs after afterEach, so stopped children's output is still there to show.
    ctx.onTestFailed(() => group.dump());
  });
  afterEach(async () => {
    await group.endTest();
  });
  afterAll(async () => {
    await group.stopAll();
  });
  return group;
}
