// vitest setupFiles: every test file's sessions (Zk.connect, and the quark processes a test spawns
// by itself) authenticate as the suite's ZooKeeper admin, so every root the suite makes is under
// ACLs. Test clusters give each of their processes its own role instead (test/cluster.ts).
import { join } from 'node:path';
import { inject } from 'vitest';
import { CREDENTIALS_ENV } from '../../ts/zk/acl.js';

process.env[CREDENTIALS_ENV] = join(inject('zkCredentials'), 'admin.json');
