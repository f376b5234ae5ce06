// What test/setup/zookeeper.ts hands to every test file through vitest's provide/inject.
import 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Connection string of the suite's shared ZooKeeper, e.g. `127.0.0.1:43121`. */
    zkConnect: string;
    /**
     * The suite's ZooKeeper credentials directory (ts/zk/acl.ts): every test session authenticates
     * as its admin (test/setup/credentials.ts), every test cluster's process as its own role.
     */
    zkCredentials: string;
  }
}
