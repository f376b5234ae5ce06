// The client: one ZooKeeper session with promises, msgpackr values, exact-version transactions,
// persistent watches and Curator's connection states. Nothing else in Quark imports
// node-zookeeper-client's client; its private internals are reached only through ts/zk/wire/.
import { EventEmitter } from 'node:events';
import zookeeper from 'node-zookeeper-client';
import './wire/patches.js';
import { decode, encode } from './codec.js';
import { codeName, libraryCode, toZkError, ZkError, isZkError } from './errors.js';
import { encodeMulti, OP_MULTI } from './wire/multi.js';
import { managerOf, type ConnectionManager, type QueuedRequest } from './wire/library.js';
import { ADD_WATCH_MODE, OPCODE_ADD_WATCH, OPCODE_REMOVE_WATCHES, pathIntRequest, WATCHER_TYPE_ANY } from './wire/raw.js';
import { exactVersion, MODES, Txn, type Mode, type TxnResult } from './txn.js';
import { AclPolicy, credentialsFromEnv, identitiesFor, OPEN_ACL, type AclList, type Credentials } from './acl.js';
import { observers } from '../common/observe.js';

const { Exception } = zookeeper;

/** The requests measured, by opcode (pings and session requests are not). */
const REQUEST_NAMES: Record<number, string> = {
  1: 'create',
  2: 'delete',
  3: 'exists',
  4: 'get',
  5: 'set',
  8: 'children',
  9: 'sync',
  12: 'children',
  14: 'multi',
  18: 'remove_watches',
  106: 'add_watch',
};

export interface Stat {
  version: number;
  cversion: number;
  numChildren: number;
  ephemeralOwner: string; // hex session id, '0000000000000000' when persistent
  ctime: number;
  mtime: number;
  /** The ACL's own version (setACL's compare-and-set). */
  aversion: number;
}

function toStat(s: zookeeper.Stat): Stat {
  return {
    version: s.version,
    cversion: s.cversion,
    numChildren: s.numChildren,
    ephemeralOwner: s.ephemeralOwner.toString('hex'),
    ctime: Number(s.ctime.readBigInt64BE(0)),
    mtime: Number(s.mtime.readBigInt64BE(0)),
    aversion: s.aversion,
  };
}

export interface Versioned<T> {
  value: T | undefined;
  stat: Stat;
}

/** One watch firing; watches are one-shot, re-arm by reading again. */
export type Watcher = (event: { type: 'created' | 'deleted' | 'data' | 'children'; path: string }) => void;
const EVENT_TYPES: Record<number, 'created' | 'deleted' | 'data' | 'children'> = {
  1: 'created',
  2: 'deleted',
  3: 'data',
  4: 'children',
};
const wrapWatcher = (w?: Watcher) =>
  w ? (e: zookeeper.Event) => w({ type: EVENT_TYPES[e.getType()] ?? 'data', path: e.getPath() }) : undefined;

/**
 * A persistent watch (ZooKeeper 3.6+ `addWatch`): it stays set after it fires, so it is never
 * re-armed by a read. 'persistent' reports the node's own created/deleted/data events and
 * 'children' when its children change; 'recursive' reports created/deleted/data for the node
 * and every descendant (never 'children'). Events come in zxid order, one per change: nothing
 * is coalesced, unlike a one-shot watch between its firing and its re-arming read.
 */
export type PersistentMode = keyof typeof ADD_WATCH_MODE;

/**
 * Connection lifecycle, as Curator names it: CONNECTED, SUSPENDED (connection lost, session may
 * still live: stop acting), RECONNECTED (same session back: re-check what you own), LOST
 * (session expired: everything ephemeral is gone; the client must be replaced).
 */
export type ConnectionState = 'CONNECTED' | 'SUSPENDED' | 'RECONNECTED' | 'LOST';

export interface ZkOptions {
  sessionTimeoutMs?: number;
  connectTimeoutMs?: number;
  /**
   * Digest credentials (ts/zk/acl.ts): the session authenticates with them and creates every node
   * with its path's ACL. Default: the file named by QUARK_ZK_CREDENTIALS, if set; null: none
   * (every node open, as before ACLs).
   */
  credentials?: Credentials | null;
  /** A compute's id, for a compute fleet's file that derives each compute's own identity. */
  computeId?: string;
}

/** An ACL entry as read back (getAcl). */
export interface AclEntry {
  perms: number;
  scheme: string;
  id: string;
}

export class Zk extends EventEmitter {
  private closed = false;
  private everConnected = false;
  private lastState: ConnectionState | undefined;
  /** Counts transactions and writes for the per-boot cost figures. */
  readonly counters = { txns: 0, writes: 0, reads: 0, watches: 0 };
  /** Persistent watches of this session, by path; re-added on every reconnect. */
  private readonly persistent = new Map<string, { mode: PersistentMode; listeners: Set<Watcher>; added?: Promise<void> }>();
  private recursiveCount = 0;
  /** The ACLs this session gives what it creates; undefined without credentials (all open). */
  readonly acl: AclPolicy | undefined;

  private constructor(
    private readonly client: zookeeper.Client,
    readonly connectionString: string,
    acl?: AclPolicy,
  ) {
    super();
    // One 'state' listener per service part and per watch recipe on this session (an orc's
    // caches, a compute's fence and intake, the api's listings): more than Node's default of ten
    // is the design, not a leak. A leak (a listener per request or per reconnect) still grows
    // past this and is reported.
    this.setMaxListeners(256);
    this.acl = acl;
    // Every watcher event also goes to the persistent listeners (the library's WatcherManager
    // only knows one-shot watchers, and drops them once they fired).
    const wm = this.manager.watcherManager;
    const emitOneShot = wm.emit.bind(wm);
    wm.emit = (ev) => {
      try {
        emitOneShot(ev);
      } finally {
        if (this.persistent.size > 0) this.route(ev.type, ev.path);
      }
    };
    this.measureRequests();
    client.on('state', (s: zookeeper.State) => {
      const name = (s as unknown as { name: string }).name;
      if (name === 'SYNC_CONNECTED') {
        const next = this.everConnected ? 'RECONNECTED' : 'CONNECTED';
        // The library re-sends its one-shot watches (SetWatches) on a new connection, not the
        // persistent ones: they are added again here, queued before anything a RECONNECTED
        // listener reads, so such a read sees every change the watch can miss.
        if (this.everConnected) {
          for (const [path, e] of this.persistent) void this.sendAddWatch(path, e.mode).catch(() => {});
        }
        this.everConnected = true;
        this.setState(next);
      } else if (name === 'DISCONNECTED') {
        if (!this.closed) this.setState('SUSPENDED');
      } else if (name === 'EXPIRED') {
        this.setState('LOST');
      }
    });
  }

  /** Each request's time from queued to answered, for the metrics (when a process measures). */
  private measureRequests(): void {
    const cm = this.manager;
    const queue = cm.queue.bind(cm);
    cm.queue = (request, cb) => {
      const report = observers.zkRequest;
      const op = REQUEST_NAMES[request.header?.type];
      if (!report || !op) return queue(request, cb);
      const start = performance.now();
      queue(request, (err, response) => {
        report(op, (performance.now() - start) / 1000, err ? codeName(libraryCode(err) ?? 0) : 'ok');
        cb?.(err, response);
      });
    };
  }

  private get manager(): ConnectionManager {
    return managerOf(this.client);
  }

  private route(typeCode: number, path: string): void {
    const type = EVENT_TYPES[typeCode];
    if (!type) return;
    const deliver = (e: { mode: PersistentMode; listeners: Set<Watcher> } | undefined): void => {
      if (!e || (e.mode === 'recursive' && type === 'children')) return;
      for (const l of [...e.listeners]) l({ type, path });
    };
    deliver(this.persistent.get(path));
    if (this.recursiveCount === 0 || type === 'children' || path === '/') return;
    for (let i = path.length; i > 0; ) {
      i = path.lastIndexOf('/', i - 1);
      const e = this.persistent.get(i === 0 ? '/' : path.slice(0, i));
      if (e?.mode === 'recursive') deliver(e);
    }
  }

  private sendAddWatch(path: string, mode: PersistentMode): Promise<void> {
    this.counters.watches++;
    return pathIntRequest(this.manager, OPCODE_ADD_WATCH, path, ADD_WATCH_MODE[mode]).catch((err) => {
      throw toZkError(err, path);
    });
  }

  /**
   * Sets a persistent watch (see PersistentMode) and resolves once the server has it. The
   * watch lives as long as the session: it is added again after every reconnect, but changes
   * made while the connection was down are not reported, so a user re-reads on RECONNECTED.
   * Several listeners on one path share one server watch; one path takes one mode.
   *
   * stop() removes the listener at once; the last one on a path also removes the server's watch
   * (`removeWatches`, type Any: ZooKeeper 3.8 has no persistent type there, so this would also
   * drop this session's one-shot watches on that exact path; if the library holds any, the
   * server watch is left set and its events ignored until the connection closes).
   */
  async persistentWatch(path: string, mode: PersistentMode, listener: Watcher): Promise<{ stop(): Promise<void> }> {
    let e = this.persistent.get(path);
    if (e && e.mode !== mode) throw new Error(`${path} already has a ${e.mode} watch`);
    const fresh = !e;
    if (!e) {
      e = { mode, listeners: new Set() };
      this.persistent.set(path, e);
      if (mode === 'recursive') this.recursiveCount++;
    }
    const entry = e;
    entry.listeners.add(listener);
    const stop = async (): Promise<void> => {
      if (!entry.listeners.delete(listener) || entry.listeners.size > 0) return;
      if (this.persistent.get(path) !== entry) return;
      this.persistent.delete(path);
      if (mode === 'recursive') this.recursiveCount--;
      const wm = this.manager.watcherManager;
      const oneShot = [wm.dataWatchers, wm.childWatchers, wm.existenceWatchers].some((w) => w?.[path]);
      if (oneShot || !this.connected || this.closed) return;
      this.counters.watches++;
      await pathIntRequest(this.manager, OPCODE_REMOVE_WATCHES, path, WATCHER_TYPE_ANY).catch(() => {});
    };
    try {
      if (fresh) entry.added = this.sendAddWatch(path, mode);
      await entry.added;
    } catch (err) {
      await stop();
      throw err;
    }
    return { stop };
  }

  private setState(s: ConnectionState): void {
    if (this.lastState === s) return;
    if (!this.closed) observers.zkState?.(this.lastState, s);
    this.lastState = s;
    this.emit('state', s);
  }

  get state(): ConnectionState | undefined {
    return this.lastState;
  }

  get connected(): boolean {
    return this.lastState === 'CONNECTED' || this.lastState === 'RECONNECTED';
  }

  /**
   * Resolves once the connection is up (at once if it is); rejects if the session is lost or
   * the wait exceeds timeoutMs. For retrying after CONNECTION_LOSS.
   */
  waitConnected(timeoutMs = 30_000): Promise<void> {
    if (this.connected) return Promise.resolve();
    if (this.lastState === 'LOST') return Promise.reject(new ZkError('SESSION_EXPIRED', undefined, 'session expired'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('state', on);
        reject(new ZkError('CONNECTION_LOSS', undefined, `not reconnected within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (s: ConnectionState): void => {
        if (s === 'SUSPENDED') return;
        clearTimeout(timer);
        this.off('state', on);
        if (s === 'LOST') reject(new ZkError('SESSION_EXPIRED', undefined, 'session expired'));
        else resolve();
      };
      this.on('state', on);
    });
  }

  /** The session timeout the server granted (it clamps what was asked into its min..max). */
  get sessionTimeoutMs(): number {
    return this.client.getSessionTimeout();
  }

  /** Hex session id, comparable with Stat.ephemeralOwner. */
  get sessionId(): string {
    return this.client.getSessionId().toString('hex');
  }

  static connect(connectionString: string, opts: ZkOptions = {}): Promise<Zk> {
    const client = zookeeper.createClient(connectionString, {
      sessionTimeout: opts.sessionTimeoutMs ?? 4000,
      spinDelay: 200,
      retries: 3,
    });
    const credentials = opts.credentials === undefined ? credentialsFromEnv() : opts.credentials;
    // Sent right after the connect request, and again on every reconnect, by the library.
    for (const i of credentials ? identitiesFor(credentials, opts.computeId) : []) client.addAuthInfo('digest', Buffer.from(`${i.user}:${i.password}`));
    const zk = new Zk(client, connectionString, credentials ? new AclPolicy(credentials, opts.computeId) : undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        client.close();
        reject(new Error(`could not connect to ZooKeeper at ${connectionString} within ${opts.connectTimeoutMs ?? 15000} ms`));
      }, opts.connectTimeoutMs ?? 15000);
      client.once('connected', () => {
        clearTimeout(timer);
        resolve(zk);
      });
      client.connect();
    });
  }

  close(): Promise<void> {
    if (!this.closed) observers.zkState?.(this.lastState, undefined);
    this.closed = true;
    // An expired session has nothing to say goodbye to, and its client never says `disconnected`.
    if (this.lastState === 'LOST') {
      this.client.close();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      // Not unref'd: a process awaiting close() in the middle of a restart (its HTTP server and
      // socket already gone) would otherwise end right here, code 0, with nothing left to run.
      const timer = setTimeout(resolve, 1000);
      this.client.once('disconnected', () => {
        clearTimeout(timer);
        resolve();
      });
      this.client.close();
    });
  }

  txn(): Txn {
    return new Txn(this);
  }

  /**
   * One multi(): the request is encoded by `encodeMulti` (the library's bytes, without its
   * per-field records) and put on the library's queue, which gives it its xid and parses the
   * reply as a multi's (its header says MULTI).
   */
  commit(t: Txn): Promise<TxnResult> {
    this.counters.txns++;
    this.counters.writes += t.ops.length;
    const cm = this.manager;
    const request: QueuedRequest = {
      header: { type: OP_MULTI, xid: 0 },
      payload: null,
      toBuffer(): Buffer {
        return encodeMulti(this.header.xid, t.ops, cm.chrootPath ?? '');
      },
    };
    type Result = { type: number; err?: number; stat?: zookeeper.Stat; path?: string };
    return new Promise((resolve, reject) => {
      cm.queue(request, (err: unknown, response?: unknown) => {
        if (err) return reject(toZkError(err));
        const results = (response as { payload: { results: Result[] } }).payload.results;
        const index = results.findIndex((r) => r.type === -1 && r.err !== 0);
        if (index >= 0) {
          const path = t.ops[index]?.path;
          const code = codeName(results[index]!.err!);
          reject(new ZkError(code, path, `transaction failed at op ${index} (${path}): ${code}`, index));
          return;
        }
        resolve(results.map((r) => ({ stat: r.stat ? toStat(r.stat) : undefined, path: r.path })));
      });
    });
  }

  get<T>(path: string, watch?: Watcher): Promise<Versioned<T> | null> {
    this.counters.reads++;
    return new Promise((resolve, reject) => {
      this.client.getData(path, wrapWatcher(watch) as never, (err, data, stat) => {
        if (err) {
          if (libraryCode(err) === Exception.NO_NODE) return resolve(null);
          return reject(toZkError(err, path));
        }
        try {
          resolve({ value: decode<T>(data), stat: toStat(stat) });
        } catch (e) {
          reject(new ZkError('OTHER', path, `malformed value at ${path}: ${(e as Error).message}`));
        }
      });
    });
  }

  getRaw(path: string): Promise<{ data: Buffer | undefined; stat: Stat } | null> {
    this.counters.reads++;
    return new Promise((resolve, reject) => {
      this.client.getData(path, (err, data, stat) => {
        if (err) {
          if (libraryCode(err) === Exception.NO_NODE) return resolve(null);
          return reject(toZkError(err, path));
        }
        resolve({ data: data ?? undefined, stat: toStat(stat) });
      });
    });
  }

  /** Children names, or null if the node does not exist. */
  children(path: string, watch?: Watcher): Promise<string[] | null> {
    this.counters.reads++;
    return new Promise((resolve, reject) => {
      this.client.getChildren(path, wrapWatcher(watch) as never, (err, children) => {
        if (err) {
          if (libraryCode(err) === Exception.NO_NODE) return resolve(null);
          return reject(toZkError(err, path));
        }
        resolve(children);
      });
    });
  }

  exists(path: string, watch?: Watcher): Promise<Stat | null> {
    this.counters.reads++;
    return new Promise((resolve, reject) => {
      this.client.exists(path, wrapWatcher(watch) as never, (err, stat) => {
        if (err) return reject(toZkError(err, path));
        resolve(stat ? toStat(stat) : null);
      });
    });
  }

  create(path: string, value?: unknown, mode: Mode = 'persistent'): Promise<string> {
    this.counters.writes++;
    return new Promise((resolve, reject) => {
      this.client.create(path, encode(value) ?? Buffer.alloc(0), this.aclFor(path) as unknown as zookeeper.ACL[], MODES[mode], (err, created) => {
        if (err) return reject(toZkError(err, path));
        resolve(created);
      });
    });
  }

  /** The ACL a node created at `path` gets from this session. */
  aclFor(path: string): AclList {
    return this.acl ? this.acl.forPath(path) : OPEN_ACL;
  }

  /** Replaces a node's ACL; version is the ACL's own (`aversion`), -1 for any. Resolves to the node's stat after. */
  setAcl(path: string, acls: AclList, version = -1): Promise<Stat> {
    this.counters.writes++;
    return new Promise((resolve, reject) => {
      this.client.setACL(path, acls as unknown as zookeeper.ACL[], exactVersion(version), (err, stat) => {
        if (err) return reject(toZkError(err, path));
        resolve(toStat(stat as zookeeper.Stat));
      });
    });
  }

  /** A node's ACL, or null if it does not exist. */
  getAcl(path: string): Promise<AclEntry[] | null> {
    this.counters.reads++;
    return new Promise((resolve, reject) => {
      this.client.getACL(path, (err, acls) => {
        if (err) {
          if (libraryCode(err) === Exception.NO_NODE) return resolve(null);
          return reject(toZkError(err, path));
        }
        const raw = acls as unknown as Array<{ permission: number; id: { scheme: string; id: string } }>;
        resolve(raw.map((a) => ({ perms: a.permission, scheme: a.id.scheme, id: a.id.id })));
      });
    });
  }

  set(path: string, value: unknown, version: number): Promise<Stat> {
    this.counters.writes++;
    return new Promise((resolve, reject) => {
      this.client.setData(path, encode(value) ?? null, exactVersion(version), (err, stat) => {
        if (err) return reject(toZkError(err, path));
        resolve(toStat(stat));
      });
    });
  }

  remove(path: string, version = -1): Promise<void> {
    this.counters.writes++;
    return new Promise((resolve, reject) => {
      this.client.remove(path, exactVersion(version), (err) => {
        if (err) return reject(toZkError(err, path));
        resolve();
      });
    });
  }

  /** Creates the path and any missing parents, empty. Existing nodes are left alone. */
  async mkdirp(path: string): Promise<void> {
    // Deepest first: where the parents exist (the usual case) this is one request, not one per level.
    try {
      await this.create(path);
    } catch (e) {
      if (isZkError(e, 'NODE_EXISTS')) return;
      // ZooKeeper checks CREATE on the parent before it looks for the node: a session that may
      // not create there gets NO_AUTH for a node that is already there too.
      if (isZkError(e, 'NO_AUTH') && (await this.exists(path))) return;
      if (!isZkError(e, 'NO_NODE')) throw e;
      const parent = path.slice(0, path.lastIndexOf('/'));
      if (parent) await this.mkdirp(parent);
      try {
        await this.create(path);
      } catch (e2) {
        if (!isZkError(e2, 'NODE_EXISTS')) throw e2;
      }
    }
  }

  /** Creates a node if absent; returns false if it was already there. */
  async createIfAbsent(path: string, value?: unknown): Promise<boolean> {
    try {
      await this.create(path, value);
      return true;
    } catch (e) {
      if (isZkError(e, 'NODE_EXISTS')) return false;
      if (isZkError(e, 'NO_AUTH') && (await this.exists(path))) return false;
      throw e;
    }
  }

  /** All paths of a subtree, parents before children. */
  async walk(path: string): Promise<string[]> {
    const kids = await this.children(path);
    if (kids === null) return [];
    const out = [path];
    for (const k of kids.sort()) out.push(...(await this.walk(`${path}/${k}`)));
    return out;
  }

  /** Removes a subtree, deepest first. Not atomic: for cleanup only; use a Txn where it matters. */
  async removeTree(path: string): Promise<void> {
    const all = await this.walk(path);
    for (const p of all.reverse()) {
      try {
        await this.remove(p);
      } catch (e) {
        if (!isZkError(e, 'NO_NODE')) throw e;
      }
    }
  }
}
