// `quark zk server`: a standalone ZooKeeper, or this host's member of an ensemble on given
// addresses (--ensemble H1,H2,H3 --myid N --host ADDR). Flags arrive as strings; a bad one is a
// RangeError naming it (the CLI turns it into a usage error).
import { join, resolve } from 'node:path';
import {
  DEFAULT_CLIENT_PORT,
  parseEnsemble,
  startEnsembleMember,
  startZooKeeper,
  type EnsembleServer,
  type RunningZooKeeper,
} from '../dev/zookeeper.js';

export interface ZkServerFlags {
  port?: string;
  dataDir?: string;
  tickMs: string;
  host?: string;
  ensemble?: string;
  myid?: string;
  startTimeoutS: string;
  say(line: string): void;
}

function int(v: string, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`--${name} must be an integer from ${min} to ${max}, got ${v}`);
  return n;
}

/** This member's id: --myid, else the position of --host in the ensemble. */
export function memberId(servers: readonly EnsembleServer[], myid: string | undefined, host: string | undefined): number {
  if (myid !== undefined) {
    const id = int(myid, 'myid', 1, 255);
    if (!servers.some((s) => s.id === id)) throw new RangeError(`--myid ${id} is not among the ensemble's ids (${servers.map((s) => s.id).join(', ')})`);
    return id;
  }
  const mine = host === undefined ? [] : servers.filter((s) => s.host === host);
  if (mine.length !== 1) throw new RangeError('--ensemble needs --myid, or a --host that appears exactly once in the list');
  return mine[0]!.id;
}

export async function zkServer(f: ZkServerFlags): Promise<RunningZooKeeper> {
  const clientPort = int(f.port ?? String(DEFAULT_CLIENT_PORT), 'port', 1, 65535);
  const dataDir = resolve(f.dataDir ?? join('.quark', 'zk'));
  const tickTime = int(f.tickMs, 'tick-ms', 1, 60_000);
  const startTimeoutMs = int(f.startTimeoutS, 'start-timeout-s', 1, 86_400) * 1000;
  if (f.ensemble === undefined) {
    if (f.myid !== undefined) throw new RangeError('--myid goes with --ensemble');
    return startZooKeeper({ clientPort, dataDir, tickTime, startTimeoutMs, ...(f.host ? { host: f.host } : {}) });
  }
  const servers = parseEnsemble(f.ensemble);
  const myid = memberId(servers, f.myid, f.host);
  const me = servers.find((s) => s.id === myid)!;
  f.say(`ZooKeeper server ${myid} of ${servers.length} at ${f.host ?? me.host}:${clientPort}: waiting for a quorum (${servers.map((s) => `${s.id}=${s.host}`).join(', ')})`);
  return startEnsembleMember({ myid, servers, clientPort, dataDir, tickTime, startTimeoutMs, ...(f.host ? { host: f.host } : {}) });
}
