// Five patches of node-zookeeper-client's ConnectionManager, applied once when this module loads
// (before any client exists: the library binds these methods per session at connect).
import { connectionManagerClass, type ConnectionManager } from './library.js';

const cm = connectionManagerClass();

/**
 * node-zookeeper-client writes every request to the socket the moment it is queued: one write
 * syscall per request. A session with many requests in flight (an orc, the api) spent most of its
 * busy time in those writes. Here a session's requests queued in one tick go out together: the
 * flush runs on the next tick with the socket corked, so they leave in one writev. Order, xids and
 * back-pressure ('drain' calls the flush again) are the library's own.
 */
if (!cm.prototype.__quarkCorked) {
  type Corked = ConnectionManager & { __flushQueued?: boolean };
  const flushNow = cm.prototype.onPacketQueueReadable;
  cm.prototype.__quarkCorked = true;
  cm.prototype.onPacketQueueReadable = function (this: Corked) {
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

/**
 * node-zookeeper-client frames replies by recursion: after each reply it calls itself with the
 * rest of the chunk, and each call first concatenates that rest into a new buffer. A chunk of n
 * replies therefore copies O(n²) bytes, and a session that falls behind (its socket delivering
 * full 64 KB chunks of replies and notifications) spends ever more time copying, so it falls
 * further behind. Here chunks are split into whole frames without copying (one concat only when
 * a frame spans chunks, once it is complete), and the library's handler is given one frame at a
 * time, which it takes whole. A partial frame is kept per socket: the library kept it across a
 * reconnect, glueing an old connection's half reply onto the new connection's first.
 * (bench:zk-client sets `__quarkFramed` before loading the client to measure the library's own.)
 */
if (!cm.prototype.__quarkFramed) {
  type Framed = ConnectionManager & { __rx?: { socket: unknown; parts: Buffer[]; have: number; need: number } };
  const onFrame = cm.prototype.onSocketData;
  cm.prototype.__quarkFramed = true;
  cm.prototype.onSocketData = function (this: Framed, chunk: Buffer) {
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

/**
 * node-zookeeper-client has no read timeout: it pings when its socket has been idle for a third
 * of the session timeout, and a write counts as activity, so a server that goes silent (its host
 * cut off, its link down: no FIN, no RST) is never noticed. The connection just hangs, requests
 * wait for ever, and the session expires on the ensemble while the client believes it is
 * CONNECTED: a compute keeps acting, an orc keeps driving shards it no longer owns. ZooKeeper's own
 * client drops a connection that has received nothing for two thirds of the session timeout and
 * tries the next server; so does this. The socket is destroyed, and the library's close handler
 * reports DISCONNECTED and connects to the next server, where the session carries on (or is found
 * expired). (A server that accepts TCP but never answers the handshake is dropped sooner, by the
 * handshake patch below.)
 */
if (!cm.prototype.__quarkReadTimeout) {
  type Timed = ConnectionManager & { __lastRx?: number };
  const onData = cm.prototype.onSocketData;
  const onConnected = cm.prototype.onSocketConnected;
  cm.prototype.__quarkReadTimeout = true;
  cm.prototype.onSocketData = function (this: Timed, chunk: Buffer) {
    this.__lastRx = performance.now();
    onData.call(this, chunk);
  };
  cm.prototype.onSocketConnected = function (this: Timed) {
    const socket = this.socket;
    this.__lastRx = performance.now();
    if (socket) {
      const period = Math.max(20, Math.floor(this.sessionTimeout / 20));
      let lastTick = performance.now();
      const timer = setInterval(() => {
        if (this.socket !== socket || socket.destroyed) return clearInterval(timer);
        const now = performance.now();
        // A stall of this process's own event loop (a long GC, a busy hollow-compute process) is
        // not the server's silence: timers run before the replies waiting in the socket are read,
        // and no ping went out meanwhile. The silence is counted again from here.
        if (now - lastTick > 2 * period) this.__lastRx = now;
        lastTick = now;
        if (now - (this.__lastRx ?? 0) > readTimeoutMs(this.sessionTimeout)) {
          clearInterval(timer);
          socket.destroy();
        }
      }, period);
      timer.unref();
      socket.once('close', () => clearInterval(timer));
    }
    onConnected.call(this);
  };
}

/** How long a connection may receive nothing before it is dropped: ZooKeeper's client's two thirds of the session timeout. */
export function readTimeoutMs(sessionTimeoutMs: number): number {
  return Math.floor((sessionTimeoutMs * 2) / 3);
}

/** The library's CONNECTING state (lib/ConnectionManager.js STATES). */
const CONNECTING = 1;

/**
 * The library clears its connect timeout as soon as TCP connects, and arms the socket's idle
 * timeout only once the server's ConnectResponse has come: a server that accepts the connection
 * but never answers the handshake holds the session in CONNECTING for good. A standalone
 * ZooKeeper killed and started again on its data did that to about half the sessions coming
 * back (the chaos suite's zk-restart runs: orcs and computes SUSPENDED for the rest of the run,
 * their sockets ESTABLISHED and silent). The Java client gives the handshake the connect timeout
 * (session timeout over the number of servers); so does this: no ConnectResponse within it, the
 * socket is destroyed, and the library's close handler connects again, to the next server.
 */
if (!cm.prototype.__quarkHandshake) {
  const onConnected = cm.prototype.onSocketConnected;
  cm.prototype.__quarkHandshake = true;
  cm.prototype.onSocketConnected = function (this: ConnectionManager) {
    const socket = this.socket;
    onConnected.call(this);
    if (!socket) return;
    const timer = setTimeout(() => {
      if (this.socket === socket && this.state === CONNECTING && !socket.destroyed) socket.destroy();
    }, this.connectTimeout);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
}

/**
 * On a new connection the library queues the session's auth packets (and its SetWatches) behind
 * whatever requests were made while it was disconnected, and writes the queue in order once the
 * server accepts the session: those requests reach the server before the credentials do, so on a
 * tree with ACLs each one fails NO_AUTH (a compute's step commit, after a ZooKeeper leader was
 * killed under a burst of boots, failed its unit so). The Java client primes a new connection
 * with the auth and the watches first; so does this: what onSocketConnected queued goes to the
 * front, in the library's own order. Nothing is written before the ConnectResponse (the queue is
 * only flushed once CONNECTED), so the reordering happens before any of it leaves.
 */
if (!cm.prototype.__quarkAuthFirst) {
  const onConnected = cm.prototype.onSocketConnected;
  cm.prototype.__quarkAuthFirst = true;
  cm.prototype.onSocketConnected = function (this: ConnectionManager) {
    const waiting = this.packetQueue.queue;
    const before = waiting.length;
    onConnected.call(this);
    if (before > 0 && waiting.length > before) waiting.unshift(...waiting.splice(before));
  };
}
