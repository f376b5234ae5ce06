// `quark zk server --ensemble`: the member list and this member's id.
import { describe, expect, it } from 'vitest';
import { parseEnsemble, serverLines } from '../dev/zookeeper.js';
import { memberId } from './zk-server.js';

describe('ensemble lists', () => {
  it('ids by position, default ports, explicit ports and ids, IPv6 in brackets', () => {
    expect(parseEnsemble('10.0.0.1, 10.0.0.2:2889:3889 ,zk3.example')).toEqual([
      { id: 1, host: '10.0.0.1', peerPort: 2888, electionPort: 3888 },
      { id: 2, host: '10.0.0.2', peerPort: 2889, electionPort: 3889 },
      { id: 3, host: 'zk3.example', peerPort: 2888, electionPort: 3888 },
    ]);
    const explicit = parseEnsemble('5=a,7=[fd00::7]:1:2');
    expect(explicit.map((s) => [s.id, s.host])).toEqual([
      [5, 'a'],
      [7, 'fd00::7'],
    ]);
    expect(serverLines(explicit)).toEqual([
      ['server.5', 'a:2888:3888'],
      ['server.7', '[fd00::7]:1:2'],
    ]);
  });

  it('refuses duplicates, bad ids, bad ports and empty lists', () => {
    expect(() => parseEnsemble('')).toThrow(/names no server/);
    expect(() => parseEnsemble('a,a')).toThrow(/a:2888 appears twice/);
    expect(() => parseEnsemble('1=a,1=b')).toThrow(/id 1 appears twice/);
    expect(() => parseEnsemble('0=a')).toThrow(/id must be 1\.\.255/);
    expect(() => parseEnsemble('a:99999:1')).toThrow(/out of range/);
    expect(() => parseEnsemble('a:1')).toThrow(/expected host/);
  });

  it("this member's id: --myid, else the position of --host", () => {
    const servers = parseEnsemble('10.0.0.1,10.0.0.2,10.0.0.3');
    expect(memberId(servers, '3', undefined)).toBe(3);
    expect(memberId(servers, undefined, '10.0.0.2')).toBe(2);
    expect(() => memberId(servers, '4', undefined)).toThrow(/not among/);
    expect(() => memberId(servers, undefined, '10.0.0.9')).toThrow(/needs --myid/);
    expect(() => memberId(servers, undefined, undefined)).toThrow(/needs --myid/);
  });
});
