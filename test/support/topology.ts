// Tests across hosts: the topology (ts/dev/topology.ts: network namespaces on a private bridge),
// processes started on chosen hosts, a client agent on a host asked over a Unix socket, a
// certificate for an address on the topology. The topology and everything in it are destroyed
// after the file, also when a test fails or the run dies (the topology's exit hook and its reaper).
import { afterAll } from 'vitest';
import { Topology } from '../../ts/dev/topology.js';
import type { ProcessGroup } from './index.js';

export { Topology, HostAgent, AgentError, certificateFor, startOn } from '../../ts/dev/topology.js';

/**
 * For a test file: `make(names)` (in its beforeAll) builds the topology; after the file's tests,
 * `group`'s processes are stopped and then the topology destroyed (a namespace lives as long as a
 * process runs in it; destroy() SIGKILLs any still there).
 */
export function useTopology(group: ProcessGroup): { make(names: readonly string[]): Promise<Topology> } {
  const made: Topology[] = [];
  afterAll(async () => {
    try {
      await group.stopAll();
    } finally {
      for (const t of made.splice(0)) await t.destroy();
    }
  });
  return {
    async make(names) {
      const t = await Topology.create(names);
      made.push(t);
      return t;
    },
  };
}

