// Quark patches node-zookeeper-client's private internals (ts/zk/wire/). This fails when the
// installed library is not the pinned version, or when anything the patches rely on has moved:
// a method they wrap, a property they read or write, a reply they let the library parse.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import zookeeper from 'node-zookeeper-client';
import { connectionManagerClass, installedVersion, jute, LIBRARY_VERSION, managerOf } from './library.js';
import './patches.js';

const load = createRequire(import.meta.url);
const source = (file: string): string => readFileSync(load.resolve(`node-zookeeper-client/lib/${file}`), 'utf8');

describe('node-zookeeper-client, pinned', () => {
  it('is installed at exactly the pinned version, and package.json asks for exactly that', () => {
    expect(installedVersion()).toBe(LIBRARY_VERSION);
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
    expect(pkg.dependencies['node-zookeeper-client']).toBe(LIBRARY_VERSION);
    const lock = JSON.parse(readFileSync(new URL('../../../package-lock.json', import.meta.url), 'utf8')) as {
      packages: Record<string, { version?: string; dependencies?: Record<string, string> }>;
    };
    expect(lock.packages['']?.dependencies?.['node-zookeeper-client']).toBe(LIBRARY_VERSION);
    expect(lock.packages['node_modules/node-zookeeper-client']?.version).toBe(LIBRARY_VERSION);
  });
});

describe('the internals the patches rely on', () => {
  const cm = connectionManagerClass();

  it('ConnectionManager has the methods the patches wrap, and they are patched', () => {
    expect(typeof cm.prototype.onPacketQueueReadable).toBe('function');
    expect(typeof cm.prototype.onSocketData).toBe('function');
    expect(cm.prototype.onSocketData.length).toBe(1);
    expect(typeof cm.prototype.queue).toBe('function');
    expect(cm.prototype.queue.length).toBe(2);
    expect(typeof cm.prototype.onSocketConnected).toBe('function');
    expect(cm.prototype.__quarkCorked).toBe(true);
    expect(cm.prototype.__quarkFramed).toBe(true);
    expect(cm.prototype.__quarkHandshake).toBe(true);
    expect(cm.prototype.__quarkReadTimeout).toBe(true);
    expect(cm.prototype.__quarkAuthFirst).toBe(true);
  });

  it('the library binds the wrapped methods per session, after the patch is applied', () => {
    const src = source('ConnectionManager.js');
    // Bound at construction and at connect from the prototype: a patched prototype takes effect.
    expect(src).toContain("this.packetQueue.on('readable', this.onPacketQueueReadable.bind(this));");
    expect(src).toContain("self.socket.on('data', self.onSocketData.bind(self));");
    expect(src).toContain("self.socket.on('connect', self.onSocketConnected.bind(self));");
    // The read timeout's way out: a destroyed socket closes, and the close handler reconnects.
    expect(src).toContain("self.socket.on('close', self.onSocketClosed.bind(self));");
    expect(src).toMatch(/default:\s*errorCode = Exception\.CONNECTION_LOSS;\s*retry = true;/);
    // The granted timeout is kept in sessionTimeout, which the read timeout follows.
    expect(src).toContain('self.updateTimeout(connectResponse.timeOut);');
    // The handshake patch's premises: CONNECTING is 1, the connect timeout is cleared on TCP connect.
    expect(src).toMatch(/CONNECTING : 1,/);
    expect(src).toMatch(/ConnectionManager\.prototype\.onSocketConnected = function \(\) \{[^}]*clearTimeout\(this\.connectTimeoutHandler\);/);
    // The auth-first patch's premises: the auth packets and SetWatches are queued by onSocketConnected
    // (behind what waited), and the queue is an array the flush shifts from, only once CONNECTED.
    expect(src).toMatch(/ConnectionManager\.prototype\.onSocketConnected = function \(\) \{[\s\S]*?payload\.auth = credential\.auth;[\s\S]*?this\.queue\(authRequest\);/);
    expect(src).toContain('this.queue(setWatchesRequest);');
    expect(source('PacketQueue.js')).toContain('this.queue.unshift(packet);');
    // The write path the corked flush calls, and 'drain' calling it again.
    expect(src).toMatch(/ConnectionManager\.prototype\.onSocketDrain = function \(\) \{\s*\/\/[^\n]*\n\s*this\.onPacketQueueReadable\(\);/);
  });

  it('onSocketData takes one whole frame when pendingBuffer is null, as the framing patch hands it', () => {
    const src = source('ConnectionManager.js');
    expect(src).toContain('if (self.pendingBuffer) {');
    expect(src).toContain('size = buffer.readInt32BE(offset);');
    expect(src).toContain('if (buffer.length === size + 4) {');
    expect(src).toContain('self.pendingBuffer = null;');
    // Notifications go to the WatcherManager's emit, which the client wraps for persistent watches.
    expect(src).toContain('self.watcherManager.emit(event);');
  });

  it('replies are parsed by the request header type: DELETE has no body, MULTI is a TransactionResponse', () => {
    const src = source('ConnectionManager.js');
    // addWatch/removeWatches present themselves as DELETE (same empty reply).
    expect(src).toMatch(/case jute\.OP_CODES\.DELETE:\s*responsePayload = null;/);
    // Our own multi encoding is queued with a MULTI header and the library parses its reply.
    expect(src).toMatch(/case jute\.OP_CODES\.MULTI:\s*responsePayload = new jute\.TransactionResponse\(\);/);
    // A request is queued as {request, callback} and its bytes taken from request.toBuffer().
    expect(src).toContain('this.packetQueue.push({');
    expect(src).toContain('this.socket.write(packet.request.toBuffer())');
    // xids are assigned by the library at send time, into request.header.xid, read by toBuffer().
    expect(src).toMatch(/header = packet\.request\.header;[\s\S]*header\.xid = this\.xid;\s*this\.xid \+= 1;/);
    const j = jute();
    expect(j.OP_CODES.DELETE).toBe(2);
    expect(j.OP_CODES.MULTI).toBe(14);
    expect(j.OP_CODES.CREATE).toBe(1);
    expect(j.OP_CODES.SET_DATA).toBe(5);
    expect(j.OP_CODES.CHECK).toBe(13);
  });

  it('a client exposes its ConnectionManager with the fields the patches and the client touch', () => {
    const client = zookeeper.createClient('127.0.0.1:1/chroot', { sessionTimeout: 4000 });
    const m = managerOf(client);
    expect(m).toBeInstanceOf(cm as unknown as new () => object);
    expect(m.pendingBuffer).toBeNull();
    expect(m.chrootPath).toBe('/chroot');
    expect(typeof m.queue).toBe('function');
    const wm = m.watcherManager;
    expect(typeof wm.emit).toBe('function');
    for (const table of [wm.dataWatchers, wm.childWatchers, wm.existenceWatchers]) expect(table).toEqual({});
    expect(typeof client.getSessionTimeout).toBe('function');
    expect(client.getSessionTimeout()).toBe(4000);
  });

  it('the jute records the reference multi encoding uses are there', () => {
    const j = jute();
    expect(typeof j.protocol.RequestHeader).toBe('function');
    expect(typeof j.Request).toBe('function');
    expect(typeof j.TransactionRequest).toBe('function');
    expect(typeof new j.TransactionRequest([]).setChrootPath).toBe('function');
    const acl = (zookeeper.ACL as unknown as { OPEN_ACL_UNSAFE: Array<{ permission: number; id: { scheme: string; id: string } }> }).OPEN_ACL_UNSAFE;
    expect(acl).toEqual([expect.objectContaining({ permission: 31, id: expect.objectContaining({ scheme: 'world', id: 'anyone' }) })]);
  });

  it('the library turns version 0 into -1 in its own Transaction (why Txn encodes ops itself)', () => {
    const src = source('Transaction.js');
    for (const op of ['check', 'setData', 'remove']) {
      expect(src).toMatch(new RegExp(`Transaction\\.prototype\\.${op} = function \\([^)]*version\\) \\{\\s*version = version \\|\\| -1;`));
    }
  });
});
