// The CLI's printing, without a cluster: tables, progress blocks and lines, exit codes, readable
// log lines, the completion script and the program's shape.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  computesTable,
  duration,
  EXIT,
  exitFor,
  humanBytes,
  outcomeLine,
  progressLines,
  renderProgress,
  serversTable,
  shardRanges,
  shardsTable,
  unitDetail,
  type UnitView,
} from './format.js';
import { colorOf, mergeLogs, readableLogLine } from './logs.js';
import { commandTree, completionScript } from './completion.js';
import { buildProgram, flagsOf, type Flags } from './program.js';
import { isReady, waitingLine } from './local.js';
import { metricsPorts } from './up.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number): string => new Date(T0 + ms).toISOString();

const unit = (over: Partial<UnitView> = {}): UnitView => ({
  id: 'u-1',
  kind: 'build',
  state: 'PENDING',
  server_id: 's-1',
  compute_id: null,
  steps_completed: [],
  steps_left: ['allocate_vcpu', 'allocate_storage', 'define', 'start'],
  created_at: at(0),
  finished_at: null,
  ...over,
});

describe('progress', () => {
  it('draws a running build: steps done with their times, the running one with its clock, the rest left', () => {
    const u = unit({
      state: 'RUNNING',
      compute_id: 'compute-2',
      steps_completed: [
        { name: 'allocate_vcpu', time_to_completion_ms: 2, completed_at: at(100) },
        { name: 'allocate_storage', time_to_completion_ms: 1500, completed_at: at(1600) },
      ],
      steps_left: ['define', 'start'],
    });
    expect(renderProgress(u, T0 + 2100)).toEqual([
      'build u-1  RUNNING on compute-2  2.1 s',
      '  ✓ allocate_vcpu     2 ms',
      '  ✓ allocate_storage  1.5 s',
      '  ▸ define            500 ms…',
      '  · start',
    ]);
  });

  it('a failed unit marks the step it failed on and says why; a pending one says it waits for placement', () => {
    const failed = unit({ state: 'FAILED', finished_at: at(40), error: { code: 'NO_VALID_HOST', message: '0 computes left' } });
    expect(renderProgress(failed, T0 + 5000)).toEqual([
      'build u-1  FAILED  40 ms',
      '  ✗ allocate_vcpu     NO_VALID_HOST',
      '  · allocate_storage',
      '  · define',
      '  · start',
      '  NO_VALID_HOST: 0 computes left',
    ]);
    expect(renderProgress(unit(), T0 + 10)).toContain('  waiting for an orc to place it');
  });

  it('as lines: the first view, a state change, each finished step once, the error once', () => {
    const a = unit();
    const b = unit({ state: 'SCHEDULED', compute_id: 'c1', steps_completed: [{ name: 'allocate_vcpu', time_to_completion_ms: 3 }], steps_left: ['allocate_storage', 'define', 'start'] });
    const c = unit({
      state: 'SCHEDULED',
      compute_id: 'c1',
      steps_completed: [
        { name: 'allocate_vcpu', time_to_completion_ms: 3 },
        { name: 'allocate_storage', time_to_completion_ms: 4 },
      ],
      steps_left: ['define', 'start'],
    });
    const d = { ...c, state: 'FAILED', error: { code: 'STEP_FAILED', message: 'boom' } };
    expect(progressLines(undefined, a)).toEqual(['build u-1: PENDING']);
    expect(progressLines(a, b)).toEqual(['build u-1: SCHEDULED on c1', '  ✓ allocate_vcpu  3 ms']);
    expect(progressLines(b, c)).toEqual(['  ✓ allocate_storage  4 ms']);
    expect(progressLines(c, c)).toEqual([]);
    expect(progressLines(c, d)).toEqual(['build u-1: FAILED on c1', '  ✗ STEP_FAILED: boom']);
  });

  it('every step appears exactly once however the views arrive (any subsequence of the unit’s history)', () => {
    const names = ['allocate_vcpu', 'allocate_storage', 'define', 'start'];
    const history = names.map((_, i) =>
      unit({ state: 'SCHEDULED', compute_id: 'c', steps_completed: names.slice(0, i + 1).map((name) => ({ name, time_to_completion_ms: 1 })), steps_left: names.slice(i + 1) }),
    );
    fc.assert(
      fc.property(fc.subarray(history.slice(0, -1)), (seen) => {
        const views = [...seen, history.at(-1)!];
        let prev: UnitView | undefined;
        const lines: string[] = [];
        for (const v of views) {
          lines.push(...progressLines(prev, v));
          prev = v;
        }
        for (const n of names) expect(lines.filter((l) => l.startsWith(`  ✓ ${n} `))).toHaveLength(1);
      }),
    );
  });

  it('outcome lines and exit codes: 0 succeeded, 3 failed, 4 timed out, 1 gone', () => {
    const done = unit({ state: 'SUCCEEDED', finished_at: at(1234) });
    expect(outcomeLine('SUCCEEDED', done, 1000)).toBe('build SUCCEEDED in 1.2 s');
    expect(outcomeLine('FAILED', unit({ state: 'FAILED', finished_at: at(5), error: { code: 'X', message: 'y' } }), 1000)).toBe('build FAILED in 5 ms: X y');
    expect(outcomeLine('timeout', unit({ state: 'RUNNING' }), 1500)).toBe('timed out after 1.5 s waiting for unit u-1 (RUNNING); it goes on: quark unit watch u-1');
    expect([exitFor('SUCCEEDED'), exitFor('FAILED'), exitFor('timeout'), exitFor('gone')]).toEqual([EXIT.OK, 3, 4, EXIT.ERROR]);
    expect(new Set(Object.values(EXIT)).size).toBe(Object.values(EXIT).length);
  });

  it('durations', () => {
    expect([duration(0), duration(999), duration(1000), duration(59_949), duration(65_000), duration(-5)]).toEqual(['0 ms', '999 ms', '1.0 s', '59.9 s', '1 m 05 s', '0 ms']);
  });
});

describe('tables', () => {
  it('servers: one aligned row each, dashes for what is not there', () => {
    const out = serversTable([
      { id: 'a', project: 'admin', name: 'web-1', status: 'ACTIVE', compute_id: 'compute-1', flavor: { vcpus: 2, ram_mb: 2048, disk_gb: 20 }, task: null, created_at: 'T' },
      { id: 'bb', project: null, name: 'db', status: 'BUILDING', compute_id: null, flavor: { vcpus: 1, ram_mb: 512, disk_gb: 0 }, task: 'u', created_at: null },
    ]);
    expect(out).toBe(
      ['ID  NAME   STATUS    COMPUTE    VCPUS  RAM_MB  DISK_GB  PROJECT  TASK  CREATED', 'a   web-1  ACTIVE    compute-1  2      2048    20       admin    -     T', 'bb  db     BUILDING  -          1      512     0        -        u     -', ''].join(
        '\n',
      ),
    );
  });

  it('computes show used/capacity; shards sort numerically and name the unowned', () => {
    expect(computesTable([{ id: 'c1', alive: true, cordoned: true, zone: 'z', capacity: { vcpus: 16, ram_mb: 100, disk_gb: 5 }, free: { vcpus: 10, ram_mb: 100, disk_gb: 0 }, managing: 3 }])).toMatch(
      /^c1 +yes +yes +z +6\/16 +0\/100 +5\/5 +3 +0 active, 0 next$/m,
    );
    expect(shardsTable({ '10': 'orc-1', '2': null, '1': 'orc-2' }).split('\n')).toEqual(['SHARD  OWNER', '1      orc-2', '2      (unowned)', '10     orc-1', '']);
  });

  it('shard ranges cover exactly the shards given', () => {
    expect(shardRanges([5, 0, 1, 2, 7, 8])).toBe('0-2,5,7-8');
    expect(shardRanges([])).toBe('-');
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 200 })), (shards) => {
        const back = shardRanges(shards)
          .split(',')
          .filter((p) => p !== '-')
          .flatMap((p) => {
            const [a, b] = p.split('-').map(Number);
            return Array.from({ length: (b ?? a!) - a! + 1 }, (_, i) => a! + i);
          });
        expect(back).toEqual([...shards].sort((x, y) => x - y));
      }),
    );
  });

  it('a unit in detail lists steps done and left', () => {
    const out = unitDetail(unit({ state: 'RUNNING', compute_id: 'c', steps_completed: [{ name: 'allocate_vcpu', time_to_completion_ms: 7 }], steps_left: ['allocate_storage'] }));
    expect(out).toMatch(/^state +RUNNING$/m);
    expect(out).toMatch(/^allocate_vcpu +done +7 ms$/m);
    expect(out).toMatch(/^allocate_storage +left +-$/m);
  });

  it('bytes', () => {
    expect([humanBytes(0), humanBytes(1023), humanBytes(1024), humanBytes(64 * 1024), humanBytes(16_121_856)]).toEqual(['0 B', '1023 B', '1.0 KiB', '64 KiB', '15 MiB']);
  });
});

describe('up --logs lines', () => {
  it("Quark's JSON records become time, level, message and fields; pino's numeric levels too; other lines pass", () => {
    const line = JSON.stringify({ t: '2026-01-01T10:11:12.345Z', level: 'warn', proc: 'orc', pid: 7, msg: 'claim conflict', orc: 'orc-1', wu: 'abc', n: 2 });
    expect(readableLogLine('orc-1', line, { width: 9 })).toBe('orc-1     | 10:11:12.345 WARN  claim conflict  orc=orc-1 wu=abc n=2');
    const pino = JSON.stringify({ level: 50, time: T0, pid: 1, hostname: 'h', msg: 'boom', err: 'x y' });
    expect(readableLogLine('api', pino)).toBe('api | 00:00:00.000 ERROR boom  err="x y"');
    expect(readableLogLine('api', 'ZooKeeper serving {not json')).toBe('api | ZooKeeper serving {not json');
    expect(readableLogLine('api', '{"half": ')).toBe('api | {"half": ');
    expect(readableLogLine('api', 'x', { color: true })).toBe(`\x1b[${colorOf('api')}mapi\x1b[0m | x`);
  });
});

describe('quark logs', () => {
  const rec = (ms: number, msg: string): string => JSON.stringify({ t: new Date(T0 + ms).toISOString(), level: 'info', msg });
  it('merges files by each record’s time; an untimed line stays after the line before it in its file', () => {
    const merged = mergeLogs([
      { name: 'api', lines: [rec(10, 'a1'), 'Error: boom', '    at x', rec(40, 'a2')] },
      { name: 'orc-1', lines: [rec(5, 'o1'), rec(20, 'o2'), rec(40, 'o3')] },
      { name: 'up', lines: ['plain before anything'] },
    ]);
    expect(merged.map((m) => `${m.name}:${m.line.startsWith('{') ? (JSON.parse(m.line) as { msg: string }).msg : m.line}`)).toEqual([
      'up:plain before anything',
      'orc-1:o1',
      'api:a1',
      'api:Error: boom',
      'api:    at x',
      'orc-1:o2',
      'api:a2',
      'orc-1:o3',
    ]);
  });

  it('keeps every line; a file written in time order keeps its order; records come out in time order', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }), { maxLength: 20 }), { maxLength: 5 }), (files) => {
        // Each process writes its records in time order (a log file is appended to).
        const input = files.map((ts, i) => {
          let clock = 0;
          return {
            name: `p${i}`,
            lines: ts.map((t, j) => {
              if (t === undefined) return `plain ${i}.${j}`;
              clock += t;
              return JSON.stringify({ t: new Date(T0 + clock).toISOString(), msg: `${i}.${j}` });
            }),
          };
        });
        const out = mergeLogs(input);
        expect(out.map((o) => o.line).sort()).toEqual(input.flatMap((f) => f.lines).sort());
        for (const f of input) expect(out.filter((o) => o.name === f.name).map((o) => o.line)).toEqual(f.lines);
        const times = out.map((o) => (o.line.startsWith('{') ? Date.parse((JSON.parse(o.line) as { t: string }).t) : undefined)).filter((t) => t !== undefined);
        expect(times).toEqual([...times].sort((x, y) => x - y));
      }),
    );
  });
});

describe('up waits for', () => {
  const want = { orcs: 2, computes: 3 };
  it('says what is missing, and is ready only with everything there', () => {
    expect(waitingLine({ api: false, apiProblem: 'not answering (ECONNREFUSED)' }, want)).toBe('waiting for the api (not answering (ECONNREFUSED))');
    const some = { api: true, orcs: 1, computes: { alive: 2, total: 3 }, shards: { owned: 10, total: 16 } };
    expect(waitingLine(some, want)).toBe('waiting for: api ✓  orcs 1/2  computes 2/3 alive  shards 10/16 owned');
    expect(isReady(some, want)).toBe(false);
    expect(isReady({ ...some, orcs: 2, computes: { alive: 3, total: 3 }, shards: { owned: 16, total: 16 } }, want)).toBe(true);
    expect(isReady({ api: true, orcs: 2, computes: { alive: 3, total: 3 } }, want)).toBe(false);
  });
});

describe('the program', () => {
  it('has every command the old parser had, and the user commands, each with its own help', () => {
    const paths = commandTree(buildProgram()).map((n) => n.path);
    for (const p of [
      'api',
      'orc',
      'orc list',
      'compute',
      'compute list',
      'compute cordon',
      'compute uncordon',
      'compute evacuate',
      'up',
      'down',
      'status',
      'zk',
      'zk tree',
      'zk ls',
      'zk get',
      'zk server',
      'config',
      'token create',
      'token list',
      'token revoke',
      'project quota set',
      'project quota show',
      'project usage',
      'group create',
      'group list',
      'group show',
      'group delete',
      'server create',
      'server list',
      'server show',
      'server delete',
      'server start',
      'server stop',
      'server reboot',
      'server console',
      'unit show',
      'unit watch',
      'image upload',
      'image list',
      'image delete',
      'shard list',
      'completion',
    ]) {
      expect(paths).toContain(p);
    }
  });

  it('the compute process keeps every flag it had', () => {
    const compute = commandTree(buildProgram()).find((n) => n.path === 'compute')!;
    for (const f of ['--id', '--vcpus', '--ram-mb', '--disk-gb', '--bandwidth-mbps', '--zone', '--labels', '--libvirt-uri', '--step-delay-ms', '--drain-timeout-ms', '--hypervisor-report-ms', '--hollow', '--id-prefix', '--start-concurrency', '--shutdown-timeout-s', '--state-dir', '--accel', '--cpu', '--probe-image', '--probe-cache', '--guest-network', '--console-port', '--console-host', '--zk', '--root', '--session-timeout-ms']) {
      expect(compute.options).toContain(f);
    }
  });

  /** Parses `argv` with the real program, the command's action swapped for one that keeps its flags. */
  const flagsFor = async (argv: string[], path = argv.slice(0, 1)): Promise<Flags> => {
    const program = buildProgram();
    let target = program;
    for (const word of path) target = target.commands.find((c) => c.name() === word)!;
    let got: Flags | undefined;
    target.action((...args: unknown[]) => void (got = flagsOf(args.at(-1) as typeof target)));
    await program.parseAsync(argv, { from: 'user' });
    return got!;
  };

  it("hands the compute's real-guest flags on under the names the guest host reads", async () => {
    const f = await flagsFor(['compute', '--id', 'c1', '--libvirt-uri', 'qemu:///system', '--accel', 'tcg', '--cpu', 'host-model', '--guest-network', 'nat', '--console-port', '7', '--console-host', '0.0.0.0', '--state-dir', 'sd', '--probe-image', 'p.qcow2', '--probe-cache', 'pc.json', '--zk', 'h:1', '--root', '/r', '--session-timeout-ms', '900']);
    expect(f.v).toMatchObject({ id: 'c1', 'libvirt-uri': 'qemu:///system', accel: 'tcg', cpu: 'host-model', 'guest-network': 'nat', 'console-port': '7', 'console-host': '0.0.0.0', 'state-dir': 'sd', 'probe-image': 'p.qcow2', 'probe-cache': 'pc.json', 'disk-gb': '500', zone: 'default', labels: '' });
    expect([f.zk, f.root, f.sessionTimeoutMs]).toEqual(['h:1', '/r', 900]);
    const d = await flagsFor(['compute', '--hollow', '3']);
    expect(d.v).toMatchObject({ hollow: '3', 'id-prefix': 'hollow', 'start-concurrency': '64', accel: 'auto', 'console-port': '0', 'guest-network': 'isolated', 'step-delay-ms': '0', 'drain-timeout-ms': '30000', 'hypervisor-report-ms': '200', 'shutdown-timeout-s': '30' });
    expect(d.v.id).toBeUndefined();
  });

  it('up: --no-demo and the new flags; zk flags given before a subcommand count for it', async () => {
    const up = await flagsFor(['up', '--no-demo', '--fresh', '--orcs', '4']);
    expect(up.v).toMatchObject({ 'no-demo': true, fresh: true, orcs: '4', port: '8080', 'zk-port': '2181', hypervisor: 'test' });
    expect((await flagsFor(['up'])).v['no-demo']).toBe(false);
    const tree = await flagsFor(['zk', '--zk', 'h:2', 'tree'], ['zk', 'tree']);
    expect(tree.zk).toBe('h:2');
    expect((await flagsFor(['up', '--metrics-port', '9100'])).v['metrics-port']).toBe('9100');
  });

  it('up --metrics-port: orcs on the base and after it, then the computes; no room is a usage error', () => {
    expect([...metricsPorts({ orcs: 2, computes: 3, metricsPort: 9100 })]).toEqual([
      ['orc-1', 9100], ['orc-2', 9101], ['compute-1', 9102], ['compute-2', 9103], ['compute-3', 9104],
    ]);
    expect(metricsPorts({ orcs: 2, computes: 3 }).size).toBe(0);
    expect(() => metricsPorts({ orcs: 2, computes: 3, metricsPort: 65534 })).toThrow(/no room for 5 listeners \(ports 65534\.\.65538\)/);
  });

  it('the bash completion script parses, and completes subcommands, options and option values', () => {
    const script = completionScript(buildProgram());
    const complete = (words: string[]): string =>
      execFileSync('bash', ['-c', `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _quark; echo "\${COMPREPLY[@]}"`], { encoding: 'utf8' }).trim();
    expect(complete(['quark', 'ser'])).toBe('server');
    expect(complete(['quark', 'server', ''])).toBe('create list show delete start stop reboot console');
    expect(complete(['quark', 'server', 'create', 'x', '--wa'])).toBe('--wait');
    expect(complete(['quark', 'server', 'list', '-o', ''])).toBe('table json');
    expect(complete(['quark', 'up', '--hyp'])).toBe('--hypervisor');
    expect(complete(['quark', 'up', '--hypervisor', ''])).toBe('test qemu');
  });
});
