// The one ZooKeeper client wrapper: promises, msgpackr values, exact-version transactions and
// connection states. Nothing else in Quark imports node-zookeeper-client.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import zookeeper from 'node-zookeeper-client';
import { decode, encode } from './codec.js';
import { encodeMulti, OP, OP_MULTI, type MultiOp } from './multi.js';

/**
 * node-zookeeper-client writes every request to the socket the moment it is queued: one write
 * syscall per request. A session with many requests in flight (an orc, the api) spent most of its
 * busy time in those writes. Here a session's requests queued in one tick go out together: the
 * flush runs on the next tick with the socket corked, so they leave in one writev. Order, xids and
 * back-pressure ('drain' calls the flush again) are the library's own.
 */
{
  const cm = createRequire(import.meta.url)('node-zookeeper-client/lib/ConnectionManager.js') as {
    prototype: { onPacketQueueReadable(this: CorkedManager): void; __quarkCorked?: boolean };
  };
  type CorkedManager = { socket?: import('node:net').Socket; __flushQueued?: boolean };
  if (!cm.prototype.__quarkCorked) {
    const flushNow = cm.prototype.onPacketQueueReadable;
    cm.prototype.__quarkCorked = true;
    cm.prototype.onPacketQueueReadable = function (this: CorkedManager) {
      if (this.__flushQueued) return;
      this.__flushQueued = true;
      process.nextTick(() => {
        this.__flushQueued = false;
        const socket = this.socket;
        const cork = !!socket && socket.writable && !socket.destroyed;
        if (cork) socket.cork();
        try {
          flushNow.call(this);
        } finally {
          if (cork) socket.uncork();
        }
      });
    };
  }
}

/**
 * node-zookeeper-client frames replies by recursion: after each reply it calls itself with the
 * rest of the chunk, and each call first concatenates that rest into a new buffer. A chunk of n
 * replies therefore copies O(n²) bytes, and a session that falls behind (its socket delivering
 * full 64 KB chunks of replies and notifications) spends ever more time copying, so it falls
 * further behind. Here chunks are split into whole frames without copying (one concat only when
 * a frame spans chunks, once it is complete), and the library's handler is given one frame at a
 * time, which it takes whole. A partial frame is kept per socket: the library kept it across a
 * reconnect, glueing an old connection's half reply onto the new connection's first.
 */
{
  type FramedManager = {
    socket?: import('node:net').Socket;
    pendingBuffer: Buffer | null;
    __rx?: { socket: unknown; parts: Buffer[]; have: number; need: number };
  };
  const cm = createRequire(import.meta.url)('node-zookeeper-client/lib/ConnectionManager.js') as {
    prototype: { onSocketData(this: FramedManager, chunk: Buffer): void; __quarkFramed?: boolean };
  };
  if (!cm.prototype.__quarkFramed) {
    const onFrame = cm.prototype.onSocketData;
    cm.prototype.__quarkFramed = true;
    cm.prototype.onSocketData = function (this: FramedManager, chunk: Buffer) {
      const socket = this.socket;
      let rx = this.__rx;
      if (!rx || rx.socket !== socket) rx = this.__rx = { socket, parts: [], have: 0, need: 0 };
      let buf = chunk;
      if (rx.have > 0) {
        rx.parts.push(chunk);
        rx.have += chunk.length;
        if (rx.have < rx.need) return;
        buf = Buffer.concat(rx.parts, rx.have);
        rx.parts = [];
        rx.have = 0;
      }
      let off = 0;
      while (buf.length - off >= 4) {
        const end = off + 4 + buf.readInt32BE(off);
        if (end > buf.length) break;
        this.pendingBuffer = null;
        onFrame.call(this, buf.subarray(off, end));
        off = end;
        // The library drops the connection on a reply it cannot place: the rest is moot.
        if (this.socket !== socket || socket?.destroyed) return;
      }
      if (off < buf.length) {
        const rest = buf.subarray(off);
        rx.parts = [rest];
        rx.have = rest.length;
        rx.need = rest.length >= 4 ? 4 + rest.readInt32BE(0) : 4;
      }
    };
  }
}

/**
 * ZooKeeper 3.6+ persistent watches, which node-zookeeper-client 1.1.3 does not speak.
 * `addWatch` (opcode 106: path, mode) and `removeWatches` (opcode 18: path, watcher type) are
 * written straight onto the library's packet queue, so they take the session's xid order and its
 * connection-loss handling. The library's reply switch does not know these opcodes (it would drop
 * the connection on their replies), so the queued request presents itself as a DELETE, whose reply
 * is the same empty header, while serialising its real opcode. Their notifications come as
 * ordinary watcher events (xid -1); the library's WatcherManager knows only one-shot watchers, so
 * Zk routes every event to its persistent listeners as well (see Zk.persistent).
 */
interface RawManager {
  queue(request: { header: { type: number; xid: number }; payload: unknown; toBuffer(): Buffer }, cb: (err: unknown) => void): void;
  chrootPath?: string;
  watcherManager: { emit(ev: { type: number; path: string }): void };
}
const OPCODE_ADD_WATCH = 106;
const OPCODE_REMOVE_WATCHES = 18;
const OPCODE_DELETE = 2; // what the library sees: a reply with no body
function rawRequest(cm: RawManager, opcode: number, path: string, int: number): Promise<void> {
  const full = (cm.chrootPath ?? '') + path;
  const request = {
    header: { type: OPCODE_DELETE, xid: 0 },
    payload: null,
    toBuffer(): Buffer {
      const p = Buffer.from(full, 'utf8');
      const b = Buffer.alloc(4 + 4 + 4 + 4 + p.length + 4);
      let o = b.writeInt32BE(b.length - 4, 0);
      o = b.writeInt32BE(this.header.xid, o);
      o = b.writeInt32BE(opcode, o);
      o = b.writeInt32BE(p.length, o);
      o += p.copy(b, o);
      b.writeInt32BE(int, o);
      return b;
    },
  };
  return new Promise((resolve, reject) => cm.queue(request, (err) => (err ? reject(toZkError(err, path)) : resolve())));
}

const { CreateMode, Exception } = zookeeper;
const OPEN_ACL = (zookeeper.ACL as unknown as { OPEN_ACL_UNSAFE: zookeeper.ACL[] }).OPEN_ACL_UNSAFE;
/** The same ACL objects as a multi op carries them (the library's ACL has `permission` and `id`; its types omit them). */
const OPEN_ACL_OP = OPEN_ACL as unknown as MultiOp['acls'];

export type ZkErrorCode =
  | 'NO_NODE'
  | 'NODE_EXISTS'
  | 'BAD_VERSION'
  | 'NOT_EMPTY'
  | 'CONNECTION_LOSS'
  | 'SESSION_EXPIRED'
  | 'OPERATION_TIMEOUT'
  | 'NO_CHILDREN_FOR_EPHEMERALS'
  | 'OTHER';

const CODE_NAMES: Record<number, ZkErrorCode> = {
  [-101]: 'NO_NODE',
  [-110]: 'NODE_EXISTS',
  [-103]: 'BAD_VERSION',
  [-111]: 'NOT_EMPTY',
  [-4]: 'CONNECTION_LOSS',
  [-112]: 'SESSION_EXPIRED',
  [-7]: 'OPERATION_TIMEOUT',
  [-108]: 'NO_CHILDREN_FOR_EPHEMERALS',
};

export class ZkError extends Error {
  override readonly name = 'ZkError';
  constructor(
    readonly code: ZkErrorCode,
    readonly path: string | undefined,
    message: string,
    /** For a failed transaction: the index of the op that failed. */
    readonly opIndex?: number,
  ) {
    super(message);
  }
}

function toZkError(err: unknown, path?: string): ZkError {
  if (err instanceof ZkError) return err;
  const e = err as { getCode?: () => number; message?: string };
  const code = typeof e?.getCode === 'function' ? (CODE_NAMES[e.getCode()] ?? 'OTHER') : 'OTHER';
  return new ZkError(code, path, `${code} ${path ?? ''}: ${e?.message ?? String(err)}`.trim());
}

const codeOf = (err: unknown): number | undefined =>
  typeof (err as { getCode?: unknown })?.getCode === 'function' ? (err as { getCode(): number }).getCode() : undefined;

export const isZkError = (err: unknown, code: ZkErrorCode): err is ZkError =>
  err instanceof ZkError && err.code === code;

/** The connection dropped mid-request: the write may or may not have been applied. */
export const isTransientZkError = (err: unknown): boolean =>
  err instanceof ZkError && (err.code === 'CONNECTION_LOSS' || err.code === 'OPERATION_TIMEOUT');

/**
 * Commits a transaction, surviving a dropped connection: after CONNECTION_LOSS it waits for the
 * session to come back and asks `applied()` whether the transaction went through before the
 * drop (its effect is visible); if not, it commits again. Returns null when it learned of the
 * success that way (no results to read).
 */
export async function commitSurely(
  zk: Zk,
  txn: Txn,
  applied: () => Promise<boolean>,
): Promise<Array<{ stat?: Stat; path?: string }> | null> {
  for (;;) {
    try {
      return await txn.commit();
    } catch (e) {
      if (!isTransientZkError(e)) throw e;
      await zk.waitConnected();
      if (await applied()) return null;
    }
  }
}

export interface Stat {
  version: number;
  cversion: number;
  numChildren: number;
  ephemeralOwner: string; // hex session id, '0000000000000000' when persistent
  ctime: number;
  mtime: number;
}

function toStat(s: zookeeper.Stat): Stat {
  return {
    version: s.version,
    cversion: s.cversion,
    numChildren: s.numChildren,
    ephemeralOwner: s.ephemeralOwner.toString('hex'),
    ctime: Number(s.ctime.readBigInt64BE(0)),
    mtime: Number(s.mtime.readBigInt64BE(0)),
  };
}

export interface Versioned<T> {
  value: T | undefined;
  stat: Stat;
}

export type Mode = 'persistent' | 'ephemeral' | 'sequential' | 'ephemeral_sequential';
const MODES: Record<Mode, number> = {
  persistent: CreateMode.PERSISTENT,
  ephemeral: CreateMode.EPHEMERAL,
  sequential: CreateMode.PERSISTENT_SEQUENTIAL,
  ephemeral_sequential: CreateMode.EPHEMERAL_SEQUENTIAL,
};

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
export type PersistentMode = 'persistent' | 'recursive';
const PERSISTENT_MODES: Record<PersistentMode, number> = { persistent: 0, recursive: 1 };
const WATCHER_TYPE_ANY = 3; // ZooKeeper 3.8's removeWatches knows Children 1, Data 2, Any 3

/**
 * Connection lifecycle, as Curator names it: CONNECTED, SUSPENDED (connection lost, session may
 * still live: stop acting), RECONNECTED (same session back: re-check what you own), LOST
 * (session expired: everything ephemeral is gone; the client must be replaced).
 */
export type ConnectionState = 'CONNECTED' | 'SUSPENDED' | 'RECONNECTED' | 'LOST';

export interface ZkOptions {
  sessionTimeoutMs?: number;
  connectTimeoutMs?: number;
}

/**
 * A multi-op transaction. Versions are passed exactly as given: node-zookeeper-client 1.1.3
 * turns version 0 into -1 ("any") in its own Transaction.check/setData/remove, which would
 * silently defeat an optimistic claim on a znode that was never written since creation.
 */
export class Txn {
  /** Built here (not by the library's Transaction) to keep version 0 exact; encoded by encodeMulti. */
  readonly ops: MultiOp[] = [];
  constructor(private readonly zk: Zk) {}

  create(path: string, value?: unknown, mode: Mode = 'persistent'): this {
    this.ops.push({ type: OP.CREATE, path, data: encode(value), acls: OPEN_ACL_OP, mode: MODES[mode] });
    return this;
  }
  /** version -1 means any version; anything else must match exactly. */
  set(path: string, value: unknown, version: number): this {
    this.ops.push({ type: OP.SET_DATA, path, data: encode(value), version: exactVersion(version) });
    return this;
  }
  remove(path: string, version = -1): this {
    this.ops.push({ type: OP.DELETE, path, version: exactVersion(version) });
    return this;
  }
  check(path: string, version: number): this {
    this.ops.push({ type: OP.CHECK, path, version: exactVersion(version) });
    return this;
  }
  get size(): number {
    return this.ops.length;
  }
  commit(): Promise<Array<{ stat?: Stat; path?: string }>> {
    return this.zk.commit(this);
  }
}

function exactVersion(v: number): number {
  if (!Number.isInteger(v) || v < -1) throw new Error(`invalid znode version ${v}`);
  return v;
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

  private constructor(
    private readonly client: zookeeper.Client,
    readonly connectionString: string,
  ) {
    super();
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

  private get manager(): RawManager {
    return (this.client as unknown as { connectionManager: RawManager }).connectionManager;
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
    return rawRequest(this.manager, OPCODE_ADD_WATCH, path, PERSISTENT_MODES[mode]);
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
      const wm = this.manager.watcherManager as unknown as Record<string, Record<string, unknown> | undefined>;
      const oneShot = ['dataWatchers', 'childWatchers', 'existenceWatchers'].some((k) => wm[k]?.[path]);
      if (oneShot || !this.connected || this.closed) return;
      this.counters.watches++;
      await rawRequest(this.manager, OPCODE_REMOVE_WATCHES, path, WATCHER_TYPE_ANY).catch(() => {});
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
    const zk = new Zk(client, connectionString);
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
    this.closed = true;
    return new Promise((resolve) => {
      this.client.once('disconnected', () => resolve());
      this.client.close();
      setTimeout(resolve, 1000).unref();
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
  commit(t: Txn): Promise<Array<{ stat?: Stat; path?: string }>> {
    this.counters.txns++;
    this.counters.writes += t.ops.length;
    const cm = this.manager;
    const request = {
      header: { type: OP_MULTI, xid: 0 },
      payload: null,
      toBuffer(): Buffer {
        return encodeMulti(this.header.xid, t.ops, cm.chrootPath ?? '');
      },
    };
    type Result = { type: number; err?: number; stat?: zookeeper.Stat; path?: string };
    return new Promise((resolve, reject) => {
      cm.queue(request as never, (err: unknown, response?: unknown) => {
        if (err) return reject(toZkError(err));
        const results = (response as { payload: { results: Result[] } }).payload.results;
        const index = results.findIndex((r) => r.type === -1 && r.err !== 0);
        if (index >= 0) {
          const path = t.ops[index]?.path;
          const e = toZkError((Exception as unknown as { create(code: number): unknown }).create(results[index]!.err!), path);
          reject(new ZkError(e.code, path, `transaction failed at op ${index} (${path}): ${e.code}`, index));
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
          if (codeOf(err) === Exception.NO_NODE) return resolve(null);
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
    return new Promise((resolve, reject) => {
      this.client.getData(path, (err, data, stat) => {
        if (err) {
          if (codeOf(err) === Exception.NO_NODE) return resolve(null);
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
          if (codeOf(err) === Exception.NO_NODE) return resolve(null);
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
      this.client.create(path, encode(value) ?? Buffer.alloc(0), OPEN_ACL, MODES[mode], (err, created) => {
        if (err) return reject(toZkError(err, path));
        resolve(created);
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

/**
 * Keeps a callback fed with a node's children, re-arming the one-shot watch each time.
 * Stops when stop() is called. A missing node reports null and is watched for creation.
 */
export function watchChildren(
  zk: Zk,
  path: string,
  onChange: (children: string[] | null) => void,
  onError: (err: unknown) => void = () => {},
): { stop(): void } {
  let stopped = false;
  const arm = async (): Promise<void> => {
    if (stopped) return;
    try {
      const kids = await zk.children(path, () => void arm());
      if (kids === null) {
        const st = await zk.exists(path, () => void arm());
        if (st) return arm();
      }
      if (!stopped) onChange(kids);
    } catch (e) {
      if (!stopped) onError(e);
    }
  };
  void arm();
  return { stop: () => void (stopped = true) };
}

/** Keeps a callback fed with a node's value (null when absent), re-arming the watch each time. */
export function watchData<T>(
  zk: Zk,
  path: string,
  onChange: (v: Versioned<T> | null) => void,
  onError: (err: unknown) => void = () => {},
): { stop(): void } {
  let stopped = false;
  const arm = async (): Promise<void> => {
    if (stopped) return;
    try {
      const v = await zk.get<T>(path, () => void arm());
      if (v === null) {
        const st = await zk.exists(path, () => void arm());
        if (st) return arm();
      }
      if (!stopped) onChange(v);
    } catch (e) {
      if (!stopped) onError(e);
    }
  };
  void arm();
  return { stop: () => void (stopped = true) };
}

/**
 * watchChildren on a persistent recursive watch, for a node whose children are leaves (a queue
 * of names): the children are listed once, then kept from the watch's created/deleted events
 * for direct children, so a change costs one notification and no read (watchChildren pays a
 * getChildren per notification to re-arm). Deeper descendants would each cost a notification,
 * hence leaves only. The listing is read again after a reconnect (changes made while the
 * connection was down are not reported), when the node itself is created, and if an event
 * arrived while a listing was in flight. A missing node reports null.
 */
export function watchChildrenPersistent(
  zk: Zk,
  path: string,
  onChange: (children: string[] | null) => void,
  onError: (err: unknown) => void = () => {},
): { stop(): void } {
  let stopped = false;
  let kids: Set<string> | null = null;
  let watch: { stop(): Promise<void> } | undefined;
  const prefix = `${path}/`;
  const report = (): void => {
    if (!stopped) onChange(kids ? [...kids] : null);
  };
  const listing = new Coalescer(
    async () => {
      if (!watch) watch = await zk.persistentWatch(path, 'recursive', onEvent);
      if (stopped) return void watch.stop();
      const got = await zk.children(path);
      kids = got ? new Set(got) : null;
    },
    () => stopped,
    onError,
    report,
  );
  const onEvent: Watcher = (ev) => {
    if (stopped) return;
    if (ev.path === path) {
      if (ev.type === 'deleted') {
        kids = null;
        report();
      } else if (ev.type === 'created') void listing.run();
      return;
    }
    if (!ev.path.startsWith(prefix) || ev.path.indexOf('/', prefix.length) >= 0) return;
    // A listing under way may or may not include this change: list once more after it.
    if (listing.busy) return void listing.run();
    const name = ev.path.slice(prefix.length);
    if (ev.type === 'created') {
      if (!kids) kids = new Set();
      if (kids.has(name)) return;
      kids.add(name);
    } else if (ev.type === 'deleted') {
      if (!kids?.delete(name)) return;
    } else return;
    report();
  };
  return {
    stop: listUntilStopped(zk, listing, () => {
      stopped = true;
      void watch?.stop();
    }),
  };
}

/**
 * Runs `listing` now and after every reconnect (changes made while the connection was down are
 * not notified); the returned stop ends that and calls `onStop`.
 */
function listUntilStopped(zk: Zk, listing: Coalescer, onStop: () => void): () => void {
  const onState = (s: ConnectionState): void => {
    if (s === 'RECONNECTED') void listing.run();
  };
  zk.on('state', onState);
  void listing.run();
  return () => {
    onStop();
    zk.off('state', onState);
  };
}

/**
 * watchChildren on a persistent watch, for a node whose children have children of their own
 * (where a recursive watch would report every descendant): each 'children' event is one
 * getChildren without a watch, so nothing is re-armed. A change the caller makes itself can skip
 * even that read: `own(commit)` opens a window around a write that adds or removes `changes`
 * children; ZooKeeper sends a session the notification of its own write before the write's
 * reply, so once every such write has settled, the listing is read only if more events arrived
 * than the writes that committed could explain. Read again after a reconnect (changes made while
 * the connection was down are not reported). A missing node reports null.
 */
export function watchChildrenOwned(
  zk: Zk,
  path: string,
  onChange: (children: string[] | null) => void,
  onError: (err: unknown) => void = () => {},
): { stop(): void; own<T>(write: Promise<T>, changes?: number): Promise<T> } {
  let stopped = false;
  let watch: { stop(): Promise<void> } | undefined;
  const mine = new OwnWrites();
  const listing = new Coalescer(
    async () => {
      if (!watch) watch = await zk.persistentWatch(path, 'persistent', onEvent);
      if (stopped) return void watch.stop();
      const kids = await zk.children(path);
      if (!stopped) onChange(kids);
    },
    () => stopped,
    onError,
  );
  const onEvent: Watcher = (ev) => {
    if (stopped || ev.path !== path) return;
    if (ev.type === 'children' && mine.absorb()) return;
    if (ev.type === 'children' || ev.type === 'created' || ev.type === 'deleted') void listing.run();
  };
  return {
    stop: listUntilStopped(zk, listing, () => {
      stopped = true;
      void watch?.stop();
    }),
    async own<T>(write: Promise<T>, changes = 1): Promise<T> {
      mine.begin();
      let ok = false;
      try {
        const r = await write;
        ok = true;
        return r;
      } finally {
        if (mine.end(ok, changes)) void listing.run();
      }
    },
  };
}

/**
 * Runs `body` one call at a time: a call while it runs makes it run once more afterwards, so
 * bursts of notifications coalesce into at most one extra read. `after` follows a burst's last
 * run; an error ends the burst and goes to `onError`. Nothing runs once `stopped()` says so.
 */
export class Coalescer {
  private running = false;
  private again = false;

  constructor(
    private readonly body: () => Promise<void>,
    private readonly stopped: () => boolean,
    private readonly onError: (err: unknown) => void,
    private readonly after: () => void = () => {},
  ) {}

  /** True while a run is under way (a call now only asks for one more). */
  get busy(): boolean {
    return this.running;
  }

  async run(): Promise<void> {
    if (this.stopped()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        await this.body();
      } while (this.again && !this.stopped());
      this.after();
    } catch (e) {
      if (!this.stopped()) this.onError(e);
    } finally {
      this.running = false;
    }
  }
}

/**
 * Tells a persistent watch's notifications caused by this session's own writes from others'.
 * ZooKeeper sends a session the notification of its own write before the write's reply, so while
 * any own write is open its notifications are counted instead of read; once the last one settles,
 * a read is due only if more arrived than the committed writes explain.
 */
export class OwnWrites {
  private open = 0;
  private events = 0;
  private explained = 0;

  begin(): void {
    this.open++;
  }

  /** A notification: true if an own write is open (it is counted; no read now). */
  absorb(): boolean {
    if (this.open === 0) return false;
    this.events++;
    return true;
  }

  /** An own write settled (`changes` notifications if it committed); true if a read is now due. */
  end(committed: boolean, changes = 1): boolean {
    if (this.open === 0) return false;
    if (committed) this.explained += changes;
    if (--this.open > 0) return false;
    const unexplained = this.events > this.explained;
    this.events = this.explained = 0;
    return unexplained;
  }
}
