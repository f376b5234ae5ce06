// A multi() request written straight into one buffer. node-zookeeper-client builds a jute record
// per op and per field and walks them twice (length, then bytes); a compute's transactions carry
// 4 to 29 ops, and that walk was the largest share of the client library's CPU in a busy hollow
// process. The bytes are the library's own, to the byte (ts/zk/wire/multi.test.ts checks it against
// the library for any ops), so its reply parsing is unchanged.
//
// Wire format (ZooKeeper's jute): int32 length, RequestHeader {int32 xid, int32 type = 14}, then
// per op MultiHeader {int32 type, bool done, int32 err = -1} and its record, then the end marker
// MultiHeader {-1, true, -1}. Records: create {path, data, acl vector, int32 flags}; delete and
// check {path, int32 version}; setData {path, data, int32 version}. A string or a buffer is an
// int32 length (-1 for none) and its bytes; an ACL is {int32 perms, scheme, id}.

import { jute as loadJute, type Jute } from './library.js';

export const OP_MULTI = 14;
/** The op types a multi() carries (ZooKeeper's opcodes). */
export const OP = { CREATE: 1, DELETE: 2, SET_DATA: 5, CHECK: 13 } as const;

export interface MultiOp {
  type: number;
  path: string;
  data?: Buffer;
  version?: number;
  acls?: ReadonlyArray<{ permission: number; id: { scheme: string; id: string } }>;
  mode?: number;
}

const HEADER = 4 + 1 + 4;

export function encodeMulti(xid: number, ops: readonly MultiOp[], chroot = ''): Buffer {
  let size = 8 + HEADER; // request header, end marker
  const paths: Buffer[] = new Array(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const p = Buffer.from(chroot + op.path, 'utf8');
    paths[i] = p;
    size += HEADER + 4 + p.length;
    switch (op.type) {
      case OP.CREATE:
        size += 4 + (op.data ? op.data.length : 0) + 4 + 4;
        for (const a of op.acls ?? []) size += 4 + 4 + Buffer.byteLength(a.id.scheme) + 4 + Buffer.byteLength(a.id.id);
        break;
      case OP.SET_DATA:
        size += 4 + (op.data ? op.data.length : 0) + 4;
        break;
      case OP.DELETE:
      case OP.CHECK:
        size += 4;
        break;
      default:
        throw new Error(`unknown multi op type ${op.type}`);
    }
  }
  const b = Buffer.allocUnsafe(size + 4);
  let o = b.writeInt32BE(size, 0);
  o = b.writeInt32BE(xid, o);
  o = b.writeInt32BE(OP_MULTI, o);
  const data = (d: Buffer | undefined): void => {
    if (!d) {
      o = b.writeInt32BE(-1, o);
      return;
    }
    o = b.writeInt32BE(d.length, o);
    o += d.copy(b, o);
  };
  const str = (s: string): void => {
    o = b.writeInt32BE(Buffer.byteLength(s), o);
    o += b.write(s, o, 'utf8');
  };
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    o = b.writeInt32BE(op.type, o);
    o = b.writeUInt8(0, o);
    o = b.writeInt32BE(-1, o);
    const p = paths[i]!;
    o = b.writeInt32BE(p.length, o);
    o += p.copy(b, o);
    switch (op.type) {
      case OP.CREATE: {
        data(op.data);
        const acls = op.acls ?? [];
        o = b.writeInt32BE(acls.length, o);
        for (const a of acls) {
          o = b.writeInt32BE(a.permission, o);
          str(a.id.scheme);
          str(a.id.id);
        }
        o = b.writeInt32BE(op.mode ?? 0, o);
        break;
      }
      case OP.SET_DATA:
        data(op.data);
        o = b.writeInt32BE(op.version ?? -1, o);
        break;
      default:
        o = b.writeInt32BE(op.version ?? -1, o);
    }
  }
  o = b.writeInt32BE(-1, o);
  o = b.writeUInt8(1, o);
  o = b.writeInt32BE(-1, o);
  if (o !== b.length) throw new Error(`multi encoding wrote ${o} of ${b.length} bytes`);
  return b;
}

let jute: Jute | undefined;

/**
 * The same request encoded by node-zookeeper-client's own jute records: the reference that
 * `encodeMulti` is checked against (ts/zk/wire/multi.test.ts) and measured against (bench:zk-client).
 */
export function encodeMultiByLibrary(xid: number, ops: readonly MultiOp[], chroot = ''): Buffer {
  jute ??= loadJute();
  const header = new jute.protocol.RequestHeader();
  header.type = OP_MULTI;
  header.xid = xid;
  const payload = new jute.TransactionRequest([...ops]);
  if (chroot) payload.setChrootPath(chroot);
  return new jute.Request(header, payload).toBuffer();
}
