// A boot whose commit reached ZooKeeper but whose answer was lost with the connection. The API's
// session runs through a relay that can drop every reply (the request still goes through) and then
// reset the connection: a real CONNECTION_LOSS after a real commit. Invariant: the client is never
// told to retry while the unit exists, and the boot is counted once.
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { Zk } from '../zk/client.js';
import type { Txn } from '../zk/txn.js';
import { Paths } from '../zk/paths.js';
import { readConfig } from '../zk/config.js';
import { uniqueRoot, waitFor, zkConnect } from '../../test/support/index.js';
import { mintToken } from '../auth/tokens.js';
import { AuthPaths } from '../auth/layout.js';
import { asProjectId } from '../auth/policy.js';

/** 127.0.0.1:<port> → ZooKeeper, which can drop replies (server → client) and reset connections. */
class ReplyDroppingLink {
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  private dropping = false;
  private cut = false;
  port = 0;

  constructor(private readonly upstream: string) {
    this.server = net.createServer((client) => {
      if (this.cut) return client.resetAndDestroy();
      const [host, port] = this.upstream.split(':');
      const up = net.connect(Number(port), host!);
      for (const s of [client, up]) {
        this.open.add(s);
        s.on('close', () => this.open.delete(s));
        s.on('error', () => {});
      }
      client.on('data', (d) => up.write(d));
      up.on('data', (d) => {
        if (!this.dropping) client.write(d);
      });
      client.on('close', () => up.destroy());
      up.on('close', () => client.destroy());
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  dropReplies(): void {
    this.dropping = true;
  }

  /** Resets every connection; refuses new ones until restore(). */
  sever(): void {
    this.cut = true;
    for (const s of this.open) s.resetAndDestroy();
    this.open.clear();
  }

  restore(): void {
    this.cut = false;
    this.dropping = false;
  }

  async close(): Promise<void> {
    this.sever();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

let direct: Zk;
let link: ReplyDroppingLink;
let apiZk: Zk;
const paths = new Paths(uniqueRoot('ambiguous'));
const ap = new AuthPaths(paths);
const apps: FastifyInstance[] = [];

beforeAll(async () => {
  direct = await Zk.connect(zkConnect());
  await readConfig(direct, paths, { shards: 2 });
  link = new ReplyDroppingLink(zkConnect());
  await link.start();
  apiZk = await Zk.connect(`127.0.0.1:${link.port}`, { sessionTimeoutMs: 10_000 });
});
afterEach(() => link.restore());
afterAll(async () => {
  for (const a of apps) await a.close().catch(() => {});
  await apiZk.close();
  await link.close();
  await direct.removeTree(paths.root);
  await direct.close();
});

/** The next transaction committed on `zk` is the one whose replies are dropped. */
function dropRepliesOfNextCommit(zk: Zk): void {
  const commit = zk.commit.bind(zk);
  zk.commit = (t: Txn) => {
    zk.commit = commit;
    link.dropReplies();
    return commit(t);
  };
}

async function serversOf(project: string): Promise<string[]> {
  const ids = (await direct.children(paths.servers)) ?? [];
  const recs = await Promise.all(ids.map((id) => direct.get<{ project?: string }>(`${paths.servers}/${id}`)));
  return ids.filter((_, i) => recs[i]?.value?.project === project);
}

describe('an ambiguous boot commit', () => {
  it('is settled by committing the same transaction again once connected: 202 with the ids of the one boot that landed', async () => {
    const app = await buildApp({ zk: apiZk, paths, config: await readConfig(direct, paths) });
    apps.push(app);
    const { secret } = await mintToken(direct, ap, { project: asProjectId('amb1'), role: 'member' });
    dropRepliesOfNextCommit(apiZk);
    const answer = app.inject({
      method: 'POST',
      url: '/v1/servers',
      payload: { name: 'once', flavor: { vcpus: 1, ram_mb: 64, disk_gb: 1 } },
      headers: { authorization: `Bearer ${secret}` },
    });
    // The commit landed (seen through another session) while its reply was thrown away.
    await waitFor(async () => (await serversOf('amb1')).length === 1, { what: 'the boot to land', timeoutMs: 5000, intervalMs: 10 });
    link.sever();
    link.restore();
    const r = await answer;
    expect(r.statusCode).toBe(202);
    const servers = await serversOf('amb1');
    expect(servers).toEqual([r.json().server_id]);
    expect(await direct.exists(paths.workUnit(r.json().work_unit_id))).not.toBeNull();
    expect((await direct.get(ap.usage(asProjectId('amb1'))))!.value).toMatchObject({ instances: 1 });
  });

  it('is never answered "retry" while the unit may exist: past the settle time it is 503 OUTCOME_UNKNOWN with the ids, and the key replays them', async () => {
    const app = await buildApp({ zk: apiZk, paths, config: await readConfig(direct, paths), commitSettleMs: 300 });
    apps.push(app);
    const { secret } = await mintToken(direct, ap, { project: asProjectId('amb2'), role: 'member' });
    const req = {
      method: 'POST' as const,
      url: '/v1/servers',
      payload: { name: 'unsure', flavor: { vcpus: 1, ram_mb: 64, disk_gb: 1 } },
      headers: { authorization: `Bearer ${secret}`, 'idempotency-key': 'amb-key' },
    };
    await apiZk.waitConnected(10_000);
    dropRepliesOfNextCommit(apiZk);
    const answer = app.inject(req);
    await waitFor(async () => (await serversOf('amb2')).length === 1, { what: 'the boot to land', timeoutMs: 5000, intervalMs: 10 });
    link.sever(); // and stays cut past the settle time
    const r = await answer;
    expect(r.statusCode).toBe(503);
    const err = r.json().error;
    expect(err.code).toBe('OUTCOME_UNKNOWN');
    const landed = await serversOf('amb2');
    expect(landed).toEqual([err.server_id]);
    expect(await direct.exists(paths.workUnit(err.work_unit_id))).not.toBeNull();
    // Once the link is back, the same key answers with the boot that landed; nothing doubles.
    link.restore();
    await apiZk.waitConnected(10_000);
    const again = await app.inject(req);
    expect(again.statusCode).toBe(202);
    expect(again.json()).toEqual({ work_unit_id: err.work_unit_id, server_id: err.server_id });
    expect(await serversOf('amb2')).toEqual(landed);
  });
});
