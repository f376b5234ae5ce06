// node-zookeeper-client's private internals, typed and loaded in one place. Quark relies on them
// (ts/zk/wire/patches.ts, raw.ts, multi.ts and the client), so the library is pinned to exactly
// this version and ts/zk/wire/library.test.ts fails if any of them moves.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

/** The one version whose internals the patches were written against. */
export const LIBRARY_VERSION = '1.1.3';

const load = createRequire(import.meta.url);

/** A request as the library's packet queue takes it: a header, and bytes on demand. */
export interface QueuedRequest {
  header: { type: number; xid: number };
  payload: unknown;
  toBuffer(): Buffer;
}

/** A notification as the library's WatcherManager receives it (jute WatcherEvent). */
export interface WatcherEventRecord {
  type: number;
  path: string;
}

/** One session's ConnectionManager (`client.connectionManager`), as far as Quark touches it. */
export interface ConnectionManager {
  socket?: Socket;
  /** The session timeout the server granted (the library updates it from the connect response). */
  sessionTimeout: number;
  /** The library's connection state: 1 is CONNECTING (TCP up or not, no ConnectResponse yet). */
  state: number;
  /** The session timeout over the number of servers: how long one server may take to connect. */
  connectTimeout: number;
  /** The library's own partial reply, which its onSocketData glues to the next chunk. */
  pendingBuffer: Buffer | null;
  chrootPath?: string;
  watcherManager: {
    emit(ev: WatcherEventRecord): void;
    dataWatchers: Record<string, unknown>;
    childWatchers: Record<string, unknown>;
    existenceWatchers: Record<string, unknown>;
  };
  /** Requests not yet written: the library keeps them across a reconnect and writes them once CONNECTED. */
  packetQueue: { queue: unknown[] };
  queue(request: QueuedRequest, cb: (err: unknown, response?: unknown) => void): void;
}

/** ConnectionManager's prototype: the methods the patches wrap (bound per session at connect). */
export interface ConnectionManagerPrototype {
  onPacketQueueReadable(this: ConnectionManager): void;
  onSocketData(this: ConnectionManager, chunk: Buffer): void;
  onSocketConnected(this: ConnectionManager): void;
  queue: ConnectionManager['queue'];
  __quarkCorked?: boolean;
  __quarkFramed?: boolean;
  __quarkReadTimeout?: boolean;
  __quarkHandshake?: boolean;
  __quarkAuthFirst?: boolean;
}

export function connectionManagerClass(): { prototype: ConnectionManagerPrototype } {
  return load('node-zookeeper-client/lib/ConnectionManager.js') as { prototype: ConnectionManagerPrototype };
}

/** The library's jute records, used only as the reference encoding of multi(). */
export interface Jute {
  OP_CODES: Record<string, number>;
  protocol: { RequestHeader: new () => { xid: number; type: number } };
  Request: new (header: unknown, payload: unknown) => { toBuffer(): Buffer };
  TransactionRequest: new (ops: unknown[]) => { setChrootPath(p: string): void };
}

export function jute(): Jute {
  return load('node-zookeeper-client/lib/jute/index.js') as Jute;
}

/** The ConnectionManager behind a client: not part of the library's public API. */
export function managerOf(client: object): ConnectionManager {
  return (client as { connectionManager: ConnectionManager }).connectionManager;
}

/** The installed library's version, from its own package.json. */
export function installedVersion(): string {
  return (load('node-zookeeper-client/package.json') as { version: string }).version;
}
