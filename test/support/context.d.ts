// What test/setup/zookeeper.ts hands to every test file through vitest's provide/inject.
import 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Connection string of the suite's shared ZooKeeper, e.g. `127.0.0.1:43121`. */
    zkConnect: string;
  }
}
