import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isAlive as alive, waitFor } from '../../test/support/index.js';
import { fourLetter, freePort, freePorts, startEnsemble, startZooKeeper, type Ensemble } from './zookeeper.js';
import { Zk } from '../zk/client.js';

const dirs: string[] = [];
async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('freePorts', () => {
  it('hands out distinct ports', async () => {
    const ports = await freePorts(9);
    expect(new Set(ports).size).toBe(9);
    expect(await freePort()).toBeGreaterThan(0);
  });
});

describe('standalone ZooKeeper', () => {
  it('answers ruok, reports standalone mode, and is gone after stop', async () => {
    const zk = await startZooKeeper({ dataDir: await tempDir('quark-zk-standalone-'), clientPort: await freePort() });
    try {
      expect(zk.connectionString).toBe(`127.0.0.1:${zk.clientPort}`);
      expect(await fourLetter(zk.clientPort, 'ruok')).toBe('imok');
      expect(await fourLetter(zk.clientPort, 'srvr')).toMatch(/^Mode: standalone$/m);
      const conf = await fourLetter(zk.clientPort, 'conf');
      expect(conf).toMatch(/^tickTime=200$/m);
      expect(conf).toMatch(/^maxClientCnxns=0$/m);
      expect(conf).toMatch(/^maxSessionTimeout=60000$/m);
      expect(alive(zk.pid)).toBe(true);
    } finally {
      await zk.stop();
    }
    expect(alive(zk.pid)).toBe(false);
    await expect(fourLetter(zk.clientPort, 'ruok')).rejects.toThrow();
  });

  it('serves through the Netty connection layer when asked', async () => {
    const dataDir = await tempDir('quark-zk-netty-');
    const zk = await startZooKeeper({ dataDir, clientPort: 0, connectionFactory: 'netty' });
    try {
      expect(await fourLetter(zk.clientPort, 'ruok')).toBe('imok');
      const log = await readFile(join(dataDir, 'zookeeper.log'), 'utf8');
      expect(log).toMatch(/NettyServerCnxnFactory/);
      const client = await Zk.connect(zk.connectionString);
      try {
        await client.create('/netty', { ok: true });
        expect((await client.get<{ ok: boolean }>('/netty'))?.value).toEqual({ ok: true });
      } finally {
        await client.close();
      }
    } finally {
      await zk.stop();
    }
  });

  it('picks a free port when asked for port 0', async () => {
    const zk = await startZooKeeper({ dataDir: await tempDir('quark-zk-port0-'), clientPort: 0 });
    try {
      expect(zk.clientPort).toBeGreaterThan(0);
      expect(await fourLetter(zk.clientPort, 'ruok')).toBe('imok');
    } finally {
      await zk.stop();
    }
  });

  it('rejects with the log tail when the server cannot start', async () => {
    const dataDir = await tempDir('quark-zk-broken-');
    // Someone else holds the client port: the JVM cannot bind it and exits.
    const squatter = createServer((socket) => socket.destroy());
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
    const port = (squatter.address() as AddressInfo).port;
    try {
      await expect(startZooKeeper({ dataDir, clientPort: port })).rejects.toThrow(
        /exited with[\s\S]*zookeeper\.log[\s\S]*BindException: Address already in use/,
      );
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });
});

describe('three-server ensemble', () => {
  let ensemble: Ensemble | undefined;
  afterAll(async () => {
    await ensemble?.stop();
  });

  it('elects a new leader when the leader is killed, and the old one rejoins as follower', async () => {
    ensemble = await startEnsemble({ baseDir: await tempDir('quark-zk-ensemble-') });
    const { servers } = ensemble;
    expect(servers).toHaveLength(3);
    expect(new Set(servers.map((s) => s.clientPort)).size).toBe(3);
    expect(ensemble.connectionString.split(',')).toHaveLength(3);

    const first = await ensemble.leader();
    const oldLeader = servers[first]!;
    const oldPid = oldLeader.pid;
    await oldLeader.kill();
    expect(oldLeader.running).toBe(false);
    expect(alive(oldPid)).toBe(false);

    const second = await ensemble.leader();
    expect(second).not.toBe(first);
    for (const s of servers.filter((s) => s.running)) {
      await waitFor(async () => /^Mode: (leader|follower)$/m.test(await fourLetter(s.clientPort, 'srvr')), {
        what: `server ${s.id} to serve under the new leader`,
        timeoutMs: 20_000,
      });
    }

    await oldLeader.start();
    expect(oldLeader.running).toBe(true);
    expect(oldLeader.pid).not.toBe(oldPid);
    expect(await fourLetter(oldLeader.clientPort, 'srvr')).toMatch(/^Mode: follower$/m);
    expect(await ensemble.leader()).toBe(second);

    const pids = servers.map((s) => s.pid);
    await ensemble.stop();
    ensemble = undefined;
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(servers.every((s) => !s.running)).toBe(true);
  });
});
