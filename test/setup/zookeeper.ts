// vitest globalSetup: one real standalone ZooKeeper for the whole run. Test files reach it with
// `inject('zkConnect')` (or zkConnect() from test/support) and keep apart by each using its own
// root path (uniqueRoot()). QUARK_TEST_ZK=<connection string> uses an existing server instead.
// It also makes the suite's ZooKeeper credentials (admin, api, orc, compute fleet): the whole
// suite runs with ZooKeeper ACLs on (test/setup/credentials.ts, test/cluster.ts).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { Launcher } from '../../ts/dev/cluster.js';
import type { RunningZooKeeper } from '../../ts/dev/zookeeper.js';
import { writeCredentialsDir } from '../../ts/zk/acl.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const credentials = await mkdtemp(join(tmpdir(), 'quark-test-zk-credentials-'));
  writeCredentialsDir(credentials);
  project.provide('zkCredentials', credentials);
  const dropCredentials = () => rm(credentials, { recursive: true, force: true });
  const external = process.env.QUARK_TEST_ZK;
  if (external) {
    project.provide('zkConnect', external);
    return dropCredentials;
  }

  const dataDir = await mkdtemp(join(tmpdir(), 'quark-test-zk-'));
  const launcher = new Launcher();
  let server: RunningZooKeeper;
  try {
    // Port 0: startZooKeeper picks a free port, and another if that one is taken meanwhile.
    server = await launcher.startZooKeeper({ dataDir, clientPort: 0 });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    await dropCredentials();
    throw err;
  }

  project.provide('zkConnect', server.connectionString);
  console.log(`[quark tests] ZooKeeper pid ${server.pid} at ${server.connectionString}, data ${dataDir}`);

  return async () => {
    try {
      await launcher.stopAll();
    } finally {
      await dropCredentials();
      if (process.env.QUARK_KEEP_ZK_DATA) {
        console.log(`[quark tests] kept ZooKeeper data and logs in ${dataDir}`);
      } else {
        await rm(dataDir, { recursive: true, force: true });
      }
    }
  };
}
