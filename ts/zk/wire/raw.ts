// Requests node-zookeeper-client 1.1.3 does not speak, written straight onto its packet queue so
// they take the session's xid order and its connection-loss handling.
import type { ConnectionManager, QueuedRequest } from './library.js';

/**
 * ZooKeeper 3.6+ persistent watches: `addWatch` (opcode 106: path, mode) and `removeWatches`
 * (opcode 18: path, watcher type). The library's reply switch does not know these opcodes (it
 * would drop the connection on their replies), so the queued request presents itself as a
 * DELETE, whose reply is the same empty header, while serialising its real opcode. Their
 * notifications come as ordinary watcher events (xid -1), which the client routes (Zk.persistent).
 */
export const OPCODE_ADD_WATCH = 106;
export const OPCODE_REMOVE_WATCHES = 18;
/** What the library sees: a reply with no body. */
const OPCODE_DELETE = 2;

/** addWatch's modes. */
export const ADD_WATCH_MODE = { persistent: 0, recursive: 1 } as const;
/** ZooKeeper 3.8's removeWatches knows Children 1, Data 2, Any 3. */
export const WATCHER_TYPE_ANY = 3;

/** One request of the shape {path, int32}; rejects with the library's error (the caller maps it). */
export function pathIntRequest(cm: ConnectionManager, opcode: number, path: string, int: number): Promise<void> {
  const full = (cm.chrootPath ?? '') + path;
  const request: QueuedRequest = {
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
  return new Promise((resolve, reject) => cm.queue(request, (err) => (err ? reject(err) : resolve())));
}
