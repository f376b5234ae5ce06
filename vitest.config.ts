import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['ts/**/*.test.ts', 'test/**/*.test.ts', 'bench/**/*.test.ts'],
    globalSetup: ['test/setup/zookeeper.ts'],
    setupFiles: ['test/setup/credentials.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One file at a time: the integration files start whole clusters (and a browser) and assert
    // failover within the session timeout; on a 2-core machine two of them at once miss it.
    fileParallelism: false,
  },
});
