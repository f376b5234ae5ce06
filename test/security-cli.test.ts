// The operator's side, through the real binary: `quark token …` and `quark project …` against a
// running `quark api`, the first admin token written straight into ZooKeeper, and `quark api`
// refusing plain HTTP off loopback unless told --insecure.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zk } from '../ts/zk/client.js';
import { credentialFiles, readCredentials } from '../ts/zk/acl.js';
import { aclMarkerPath, readConfig } from '../ts/zk/config.js';
import { Paths } from '../ts/zk/paths.js';
import { freePort } from '../ts/dev/zookeeper.js';
import { uniqueRoot, useProcessGroup, waitFor, zkConnect, zkCredentials } from './support/index.js';
import { http } from './cluster.js';

const group = useProcessGroup();
const root = uniqueRoot('cli');
let zk: Zk;
let api: string;
let cwd: string;

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  cwd = mkdtempSync(join(tmpdir(), 'quark-cli-')); // no .quark/ here: nothing is picked up by accident
  const port = await freePort();
  api = `http://127.0.0.1:${port}`;
  group.spawnQuark(['api', '--port', String(port), '--zk', zkConnect(), '--root', root], { label: 'api', cwd });
  await waitFor(async () => (await http(`${api}/healthz`)).status === 200, { what: 'the api', timeoutMs: 30_000, intervalMs: 100 });
}, 60_000);
afterAll(async () => {
  await group.stopAll();
  await zk.removeTree(root);
  await zk.close();
  rmSync(cwd, { recursive: true, force: true });
});

/** Runs `quark <args>` to its end; its exit code and output. */
async function quark(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = group.spawnQuark(args, { cwd, env: { QUARK_TOKEN: undefined, QUARK_API: undefined, ...env } });
  const exit = await child.exited;
  return { code: exit.code, out: child.stdout(), err: child.stderr() };
}

const field = (out: string, name: string): string => new RegExp(`^${name} +(\\S+)$`, 'm').exec(out)?.[1] ?? '';

describe('quark token and quark project', () => {
  it('bootstrap an admin, make a member with a TTL, list, set a quota, read usage, revoke', async () => {
    const boot = await quark(['token', 'create', '--bootstrap', '--project', 'ops', '--role', 'admin', '--zk', zkConnect(), '--root', root]);
    expect(boot.code, boot.err).toBe(0);
    const admin = field(boot.out, 'token');
    expect(admin).toMatch(/^quark\.[0-9a-f]{24}\./);
    expect(boot.out).toMatch(/shown this once/);
    const as = { QUARK_TOKEN: admin };

    const made = await quark(['token', 'create', '--project', 'p1', '--role', 'member', '--ttl', '1h', '--name', 'alice', '--api', api], as);
    expect(made.code, made.err).toBe(0);
    const member = field(made.out, 'token');
    const memberId = field(made.out, 'id');
    expect(Date.parse(field(made.out, 'expires')) - Date.now()).toBeGreaterThan(59 * 60_000);
    expect((await http(`${api}/v1/whoami`, { headers: { authorization: `Bearer ${member}` } })).body).toEqual({ token_id: memberId, project: 'p1', role: 'member' });

    const list = await quark(['token', 'list', '--api', api], as);
    expect(list.code, list.err).toBe(0);
    expect(list.out).toMatch(new RegExp(`^${memberId} +p1 +member +active .* alice$`, 'm'));
    expect(list.out).not.toContain(member.split('.')[2]); // the secret is never shown again

    const set = await quark(['project', 'quota', 'set', 'p1', '--instances', '3', '--vcpus', '8', '--api', api], as);
    expect(set.code, set.err).toBe(0);
    expect(set.out).toMatch(/instances=3 vcpus=8 ram_mb=unlimited disk_gb=unlimited/);
    // Setting one limit keeps the others.
    await quark(['project', 'quota', 'set', 'p1', '--ram-mb', '4096', '--api', api], as);
    expect((await quark(['project', 'quota', 'show', 'p1', '--api', api], as)).out).toMatch(/instances=3 vcpus=8 ram_mb=4096 disk_gb=unlimited/);
    const boot1 = await http(`${api}/v1/servers`, { method: 'POST', body: { name: 'x', flavor: { vcpus: 2, ram_mb: 512, disk_gb: 5 } }, headers: { authorization: `Bearer ${member}` } });
    expect(boot1.status).toBe(202);
    const usage = await quark(['project', 'usage', 'p1', '--api', api], { QUARK_TOKEN: member });
    expect(usage.code, usage.err).toBe(0);
    expect(usage.out).toMatch(/^usage +instances=1 vcpus=2 ram_mb=512 disk_gb=5$/m);

    // A member may not manage tokens: the CLI says why and fails.
    const denied = await quark(['token', 'list', '--api', api], { QUARK_TOKEN: member });
    expect(denied.code).toBe(1);
    expect(denied.err).toMatch(/403 FORBIDDEN/);

    const rev = await quark(['token', 'revoke', memberId, '--api', api], as);
    expect(rev.code, rev.err).toBe(0);
    expect(rev.out).toMatch(/is revoked/);
    const after = await http(`${api}/v1/whoami`, { headers: { authorization: `Bearer ${member}` } });
    expect([after.status, after.body.error.code]).toEqual([401, 'TOKEN_REVOKED']);
  });

  // Invariant: on a fresh root under ACLs, the token bootstrap (the admin's first step of a
  // cluster started by hand, one process per host) sets the root up, so that an api holding only
  // api.json then starts on it: without that, every role but admin was refused the fresh root
  // (ZK_ROOT_NOT_INITIALISED), and after \`quark zk secure\` the api was refused shards/<n>.
  it('the bootstrap sets a fresh root up under ACLs: an api with only its own credentials starts on it', async () => {
    const fresh = new Paths(uniqueRoot('cli-bootstrap-acl'));
    const asApi = await Zk.connect(zkConnect(), { credentials: readCredentials(credentialFiles(zkCredentials()).api) });
    try {
      // The suite's admin credentials are in this process's environment (test/setup/credentials.ts): the CLI inherits them.
      const boot = await quark(['token', 'create', '--bootstrap', '--project', 'ops', '--role', 'admin', '--zk', zkConnect(), '--root', fresh.root]);
      expect(boot.code, boot.err).toBe(0);
      expect(await zk.exists(aclMarkerPath(fresh))).not.toBeNull();
      const cfg = await readConfig(asApi, fresh);
      expect(cfg.shards).toBeGreaterThan(0);
      // The api's nodes follow the rules: a session without credentials may not read the root.
      const anon = await Zk.connect(zkConnect(), { credentials: null });
      try {
        expect(await anon.children(fresh.root).then(() => 'read', (e: { code?: string }) => e.code)).toBe('NO_AUTH');
      } finally {
        await anon.close();
      }
    } finally {
      await asApi.close();
      await zk.removeTree(fresh.root).catch(() => {});
    }
  });

  it('without a token the CLI says where to put one', async () => {
    const r = await quark(['token', 'list', '--api', api]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no token: set QUARK_TOKEN or put one in .*\.quark\/token/);
  });

  it('bad arguments are usage errors', async () => {
    expect((await quark(['token', 'create', '--project', 'p1', '--api', api])).code).toBe(2);
    expect((await quark(['token', 'create', '--project', '../x', '--role', 'member', '--bootstrap', '--zk', zkConnect(), '--root', root])).code).toBe(2);
    expect((await quark(['token', 'create', '--project', 'p1', '--role', 'member', '--ttl', 'forever', '--bootstrap', '--zk', zkConnect(), '--root', root])).code).toBe(2);
  });
});

describe('quark api off loopback', () => {
  it('refuses plain HTTP on 0.0.0.0, and with --insecure serves it with a loud warning', async () => {
    const port = await freePort();
    const refused = await quark(['api', '--host', '0.0.0.0', '--port', String(port), '--zk', zkConnect(), '--root', root]);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/refusing to serve plain HTTP on 0\.0\.0\.0.*--tls-cert.*--insecure/);
    const insecure = group.spawnQuark(['api', '--host', '0.0.0.0', '--port', String(port), '--insecure', '--zk', zkConnect(), '--root', root], { cwd, label: 'insecure api' });
    await insecure.waitForOutput(/\*\*\* INSECURE: serving plain HTTP on 0\.0\.0\.0/);
    await waitFor(async () => (await http(`http://127.0.0.1:${port}/healthz`)).status === 200, { what: 'the insecure api', timeoutMs: 30_000, intervalMs: 100 });
  });
});
