// Helpers shared by the integration tests: where the CLI is, the suite's ZooKeeper, unique
// ZooKeeper roots, polling, and child processes that are always cleaned up and whose output is
// shown when a test fails.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, inject } from 'vitest';
import { Zk } from '../../ts/zk/client.js';

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

// ---------------------------------------------------------------------------------------------
// Child processes

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Line {
  stream: 'stdout' | 'stderr';
  text: string;
}

const MAX_LINES = 5_000;

/**
 * The tail of a stream's output, split into lines and bounded so a chatty child cannot
 * exhaust memory.
 */
class OutputTail extends EventEmitter {
  readonly lines: Line[] = [];
  private readonly partial = { stdout: '', stderr: '' };

  attach(stream: NodeJS.ReadableStream | null, name: Line['stream']): void {
    if (!stream) return;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (this.partial[name] + chunk).split('\n');
      this.partial[name] = parts.pop() ?? '';
      for (const text of parts) this.push({ stream: name, text });
    });
    stream.on('end', () => {
      if (this.partial[name]) this.push({ stream: name, text: this.partial[name] });
      this.partial[name] = '';
    });
  }

  private push(line: Line): void {
    this.lines.push(line);
    if (this.lines.length > MAX_LINES) this.lines.splice(0, this.lines.length - MAX_LINES);
    this.emit('line', line);
  }
}

/** A child process started by a ProcessGroup. */
export class Child {
  readonly pid: number;
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;
  private readonly out = new OutputTail();

  constructor(
    readonly label: string,
    readonly proc: ChildProcess,
  ) {
    if (proc.pid === undefined) throw new Error(`could not spawn ${label}`);
    this.pid = proc.pid;
    this.out.attach(proc.stdout, 'stdout');
    this.out.attach(proc.stderr, 'stderr');
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  stdout(): string {
    return this.text('stdout');
  }

  stderr(): string {
    return this.text('stderr');
  }

  /** stdout and stderr interleaved in arrival order. */
  output(): string {
    return this.text();
  }

  /** The last `n` lines, stderr lines marked, for failure reports. */
  lastLines(n = 60): string {
    return this.out.lines
      .slice(-n)
      .map((l) => (l.stream === 'stderr' ? `[stderr] ${l.text}` : l.text))
      .join('\n');
  }

  /**
   * Resolves with the first output line (either stream, past or future) matching `pattern`;
   * rejects if the child exits first or on timeout, with the output's tail.
   */
  waitForOutput(pattern: RegExp | string, { timeoutMs = 15_000 } = {}): Promise<string> {
    const matches = (text: string) => (typeof pattern === 'string' ? text.includes(pattern) : pattern.test(text));
    const seen = this.out.lines.find((l) => matches(l.text));
    if (seen) return Promise.resolve(seen.text);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.out.off('line', onLine);
        this.proc.off('exit', onExit);
      };
      const onLine = (l: Line) => {
        if (matches(l.text)) {
          cleanup();
          resolve(l.text);
        }
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`${this.label} (pid ${this.pid}) exited before printing ${pattern}\n${this.lastLines()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.label} (pid ${this.pid}) did not print ${pattern} in ${timeoutMs} ms\n${this.lastLines()}`));
      }, timeoutMs);
      this.out.on('line', onLine);
      if (!this.running) onExit();
      else this.proc.once('exit', onExit);
    });
  }

  /** Sends `sig` to the child itself (not its descendants). */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // already gone
    }
  }

  /** SIGKILLs whatever is left of the child's process group (its descendants). */
  killGroup(): void {
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      // no such group left
    }
  }

  private text(stream?: Line['stream']): string {
    return this.out.lines
      .filter((l) => stream === undefined || l.stream === stream)
      .map((l) => l.text)
      .join('\n');
  }
}

export interface SpawnChildOptions {
  /** Name used in failure reports; default the first argument. */
  label?: string;
  /** Added to (and overriding) the test process's environment. */
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** Every child any group started and has not seen exit, so that they die with this process. */
const liveChildren = new Set<Child>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of liveChildren) {
      c.signal('SIGKILL');
      c.killGroup();
    }
  });
}

// Execs into the real command (same pid) after starting a watcher that SIGKILLs it if the test
// process vanishes without running its exit hook (a killed vitest worker), so nothing lingers.
const WATCHDOG =
  'parent=$1; shift; ' +
  '( while kill -0 $$ 2>/dev/null; do ' +
  'if ! kill -0 "$parent" 2>/dev/null; then kill -9 $$ 2>/dev/null; break; fi; sleep 1; ' +
  'done ) </dev/null >/dev/null 2>&1 & exec "$@"';

/**
 * Node child processes that belong to one test file. Each runs in its own process group, so
 * stopping it also reaps anything it started; its output is captured for failure reports.
 */
export class ProcessGroup {
  private readonly children: Child[] = [];
  /** Children started inside the current test (vs. in beforeAll); afterEach stops only these. */
  private testScoped = new Set<Child>();
  private inTest = false;

  constructor(private readonly graceMs = 5_000) {}

  /** `node <args…>` with the test process's Node binary. */
  spawn(args: string[], opts: SpawnChildOptions = {}): Child {
    installExitHook();
    const spawnOpts: SpawnOptions = {
      cwd: opts.cwd ?? repoRoot(),
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    };
    const proc = spawn('/bin/sh', ['-c', WATCHDOG, 'quark-test-child', String(process.pid), process.execPath, ...args], spawnOpts);
    const child = new Child(opts.label ?? args[0] ?? 'node', proc);
    this.children.push(child);
    liveChildren.add(child);
    void child.exited.then(() => liveChildren.delete(child));
    if (this.inTest) this.testScoped.add(child);
    return child;
  }

  /** `node dist/ts/cli/main.js <args…>`, labelled `quark <subcommand>`. */
  spawnQuark(args: string[], opts: SpawnChildOptions = {}): Child {
    return this.spawn([quarkBin(), ...args], { label: `quark ${args[0] ?? ''}`.trim(), ...opts });
  }

  get all(): readonly Child[] {
    return this.children;
  }

  pids(): number[] {
    return this.children.map((c) => c.pid);
  }

  /** SIGKILLs one process (a crash, not a shutdown) and waits until it has exited. */
  async kill9(pid: number): Promise<void> {
    const child = this.children.find((c) => c.pid === pid);
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
    await this.stop(this.children);
  }

  async stop(children: readonly Child[]): Promise<void> {
    await Promise.all(
      children.map(async (c) => {
        if (c.running) {
          c.signal('SIGTERM');
          const timer = setTimeout(() => c.signal('SIGKILL'), this.graceMs);
          await c.exited;
          clearTimeout(timer);
        }
        c.killGroup();
      }),
    );
  }

  /** Prints the last lines of each child's output to stderr. */
  dump(children: readonly Child[] = this.children, lines = 60): void {
    for (const c of children) {
      const state = c.exit
        ? `exited ${c.exit.signal ? `by ${c.exit.signal}` : `with code ${c.exit.code}`}`
        : 'running';
      console.error(`----- ${c.label} (pid ${c.pid}, ${state}): last ${lines} lines -----\n${c.lastLines(lines)}`);
    }
  }

  /** @internal hook plumbing for useProcessGroup */
  beginTest(): void {
    this.inTest = true;
    // Forget children that finished in earlier tests; their reports are no longer needed.
    for (let i = this.children.length - 1; i >= 0; i--) {
      if (!this.children[i]!.running) this.children.splice(i, 1);
    }
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
