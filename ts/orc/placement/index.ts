// The orc's cluster view: the native scorer when the addon loads, else the TypeScript twin
// (same semantics, slower). Either is fed incrementally from ZooKeeper watches.
import type { Logger } from '../../common/log.js';
import { NativeClusterView } from './native.js';
import { TwinClusterView } from './twin.js';
import type { ClusterView, ScorerOptions } from './types.js';

export { NativeClusterView } from './native.js';
export { TwinClusterView } from './twin.js';
export type { Explained } from './twin.js';
export * from './types.js';

export interface CreateClusterViewOptions extends ScorerOptions {
  log?: Logger;
  /** 'auto' (default): native if the addon loads, else the twin. */
  implementation?: 'auto' | 'native' | 'twin';
}

export function createClusterView(opts: CreateClusterViewOptions = {}): ClusterView {
  const { log, implementation = 'auto', ...scorer } = opts;
  if (implementation !== 'twin') {
    try {
      const view = new NativeClusterView(scorer);
      log?.info('placement: native scorer', { simd: view.simd ? 'avx2' : 'portable' });
      return view;
    } catch (err) {
      if (implementation === 'native') throw err;
      // Bad options fail the same way in the twin; only a missing addon means fall back.
      if (err instanceof RangeError) throw err;
      log?.warn('placement: native addon unavailable, using the TypeScript twin', { err });
    }
  }
  if (implementation === 'twin') log?.info('placement: TypeScript twin scorer');
  return new TwinClusterView(scorer);
}
