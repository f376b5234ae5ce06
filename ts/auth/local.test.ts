// What `quark up` leaves for the CLI and the examples: an admin token in .quark/token, 0600.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zk } from '../zk/client.js';
import { uniqueRoot, zkConnect } from '../../test/support/index.js';
import { AuthPaths } from './layout.js';
import { authHeaders, defaultToken, ensureLocalAdminToken, tokenFile } from './local.js';
import { revokeToken, TokenStore } from './tokens.js';

const root = uniqueRoot('local');
let zk: Zk;
let home: string;

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  home = mkdtempSync(join(tmpdir(), 'quark-home-'));
});
afterAll(async () => {
  await zk.removeTree(root);
  await zk.close();
  rmSync(home, { recursive: true, force: true });
});

describe('ensureLocalAdminToken', () => {
  it('makes an admin token, saves it 0600, reuses it while it works, and replaces it once revoked', async () => {
    const first = await ensureLocalAdminToken({ zk: zkConnect(), root, home });
    expect(first.created).toBe(true);
    const file = tokenFile(home);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toBe(first.token);
    const ap = new AuthPaths({ root });
    expect(await new TokenStore(zk, ap).verify(first.token)).toMatchObject({ role: 'admin', project: 'admin' });

    const again = await ensureLocalAdminToken({ zk: zkConnect(), root, home });
    expect(again).toEqual({ token: first.token, created: false });

    await revokeToken(zk, ap, first.token.split('.')[1]!);
    const third = await ensureLocalAdminToken({ zk: zkConnect(), root, home });
    expect(third.created).toBe(true);
    expect(third.token).not.toBe(first.token);
    expect(readFileSync(file, 'utf8').trim()).toBe(third.token);
  });

  it('a token file with loose permissions is tightened when written', async () => {
    const file = tokenFile(home);
    writeFileSync(file, 'junk\n');
    chmodSync(file, 0o644);
    expect(statSync(file).mode & 0o777).toBe(0o644);
    await ensureLocalAdminToken({ zk: zkConnect(), root, home });
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});

describe('defaultToken', () => {
  it('QUARK_TOKEN overrides the file', () => {
    const file = join(home, 'other-token');
    writeFileSync(file, 'from-file\n', { mode: 0o600 });
    const saved = process.env.QUARK_TOKEN;
    try {
      delete process.env.QUARK_TOKEN;
      expect(defaultToken(file)).toBe('from-file');
      process.env.QUARK_TOKEN = 'from-env';
      expect(authHeaders(file)).toEqual({ authorization: 'Bearer from-env' });
      expect(defaultToken(join(home, 'missing'))).toBe('from-env');
      delete process.env.QUARK_TOKEN;
      expect(defaultToken(join(home, 'missing'))).toBeUndefined();
    } finally {
      if (saved === undefined) delete process.env.QUARK_TOKEN;
      else process.env.QUARK_TOKEN = saved;
    }
  });
});
