// The hand-written multi() encoder writes exactly the bytes node-zookeeper-client's jute records
// would, for any ops (so the server, and the library's reply parsing, see no difference).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import zookeeper from 'node-zookeeper-client';
import { encodeMulti, encodeMultiByLibrary, type MultiOp } from './multi.js';

const ACLS = zookeeper.ACL as unknown as { OPEN_ACL_UNSAFE: MultiOp['acls']; READ_ACL_UNSAFE: MultiOp['acls'] };

const path = fc.array(fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }), { minLength: 1, maxLength: 4 }).map((xs) => '/' + xs.join('/'));
const data = fc.option(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), { nil: undefined });
const version = fc.integer({ min: -1, max: 2 ** 31 - 1 });
const op: fc.Arbitrary<MultiOp> = fc.oneof(
  fc.record({ type: fc.constant(1), path, data, acls: fc.constantFrom(ACLS.OPEN_ACL_UNSAFE, ACLS.READ_ACL_UNSAFE), mode: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ type: fc.constant(2), path, version }),
  fc.record({ type: fc.constant(5), path, data, version }),
  fc.record({ type: fc.constant(13), path, version }),
);

describe('encodeMulti', () => {
  it('property: the same bytes as the library for any ops, xid and chroot', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.array(op, { maxLength: 30 }), fc.constantFrom('', '/chroot', '/ü'), (xid, ops, chroot) => {
        expect(encodeMulti(xid, ops, chroot).equals(encodeMultiByLibrary(xid, ops, chroot))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('keeps version 0 exact (the library only loses it in Transaction.setData/check/remove)', () => {
    const b = encodeMulti(7, [{ type: 13, path: '/a', version: 0 }]);
    // length, xid, type, MultiHeader(13, false, -1), "/a", version, end marker
    expect(b.readInt32BE(4 + 4 + 4 + 9 + 4 + 2)).toBe(0);
  });

  it('refuses an op it does not know', () => {
    expect(() => encodeMulti(1, [{ type: 99, path: '/x' }])).toThrow(/unknown multi op type 99/);
  });
});
