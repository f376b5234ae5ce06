// /ui/cluster — every compute with bars for what its capacity holds, and every orc with the shards
// it owns; refreshed every two seconds.
import { getJson, type ComputeView, type OrcView, type Resources } from '../api.js';
import { ago, fill, h } from '../dom.js';
import { every, failure, type Page } from './common.js';

const RESOURCES: Array<{ key: keyof Resources; label: string; unit: string }> = [
  { key: 'vcpus', label: 'vCPU', unit: '' },
  { key: 'ram_mb', label: 'RAM', unit: ' MB' },
  { key: 'disk_gb', label: 'disk', unit: ' GB' },
  { key: 'bandwidth_mbps', label: 'network', unit: ' Mb/s' },
];

/** used / capacity as a bar; overcommitted resources (vCPU) may pass 100 %, which the bar shows. */
function bar(label: string, used: number, cap: number, unit: string, key: string): HTMLElement {
  const pct = cap > 0 ? (100 * used) / cap : 0;
  const fillEl = h('div', { class: 'bar-fill' });
  fillEl.style.width = `${Math.min(100, Math.max(0, pct))}%`;
  return h(
    'div',
    { class: `bar${pct > 100 ? ' over' : ''}`, 'data-resource': key, 'data-used': used, 'data-capacity': cap },
    h('span', { class: 'bar-label' }, label),
    h('div', { class: 'bar-track' }, fillEl),
    h('span', { class: 'bar-text' }, `${used}/${cap}${unit} (${Math.round(pct)}%)`),
  );
}

export const clusterPage: Page = async (root) => {
  document.title = 'Cluster · Quark';
  const computesEl = h('div', { class: 'computes', id: 'computes' });
  const orcsEl = h('div', { class: 'orcs', id: 'orcs' });
  const summary = h('span', { class: 'muted', id: 'cluster-summary' });
  const problem = h('div');
  fill(
    root,
    h('header', { class: 'page-head' }, h('h1', {}, 'Cluster'), h('div', { class: 'head-side' }, summary)),
    problem,
    h('section', {}, h('h2', {}, 'Computes'), computesEl),
    h('section', {}, h('h2', {}, 'Orchestrators and their shards'), orcsEl),
  );

  const load = async (): Promise<void> => {
    try {
      const [computes, orcs, shards] = await Promise.all([
        getJson<ComputeView[]>('/v1/computes'),
        getJson<OrcView[]>('/v1/orcs'),
        getJson<Record<string, string | null>>('/v1/shards'),
      ]);
      fill(problem);
      const alive = computes.body.filter((c) => c.alive).length;
      const owned = new Map<string, number[]>();
      const unowned: number[] = [];
      for (const [n, owner] of Object.entries(shards.body)) {
        if (owner === null) unowned.push(Number(n));
        else owned.set(owner, [...(owned.get(owner) ?? []), Number(n)]);
      }
      const total = Object.keys(shards.body).length;
      summary.textContent = `${alive}/${computes.body.length} computes alive · ${orcs.body.length} ${orcs.body.length === 1 ? 'orc' : 'orcs'} · ${total - unowned.length}/${total} shards owned`;
      fill(
        computesEl,
        ...computes.body.map((c) =>
          h(
            'article',
            { class: `card compute${c.alive ? '' : ' dead'}`, 'data-compute': c.id },
            h(
              'header',
              {},
              h('h3', {}, c.id),
              h('span', { class: `badge ${c.alive ? 'badge-succeeded' : 'badge-failed'}` }, c.alive ? 'alive' : 'lost'),
            ),
            h('p', { class: 'muted' }, `zone ${c.zone}`, c.labels.length ? ` · labels ${c.labels.join(', ')}` : ''),
            ...RESOURCES.map((r) => bar(r.label, c.capacity[r.key] - c.free[r.key], c.capacity[r.key], r.unit, r.key)),
            h('p', { class: 'counts' }, `${c.managing} ${c.managing === 1 ? 'VM' : 'VMs'} · ${c.active_tasks} running · ${c.next_tasks} queued`),
          ),
        ),
        computes.body.length === 0 && h('p', { class: 'muted' }, 'No computes have registered.'),
      );
      fill(
        orcsEl,
        ...orcs.body.map((o) => {
          const mine = (owned.get(o.id) ?? []).sort((a, b) => a - b);
          return h(
            'article',
            { class: 'card orc', 'data-orc': o.id },
            h('header', {}, h('h3', {}, o.id), h('span', { class: 'muted' }, `${mine.length} ${mine.length === 1 ? 'shard' : 'shards'}`)),
            h('p', { class: 'muted' }, `pid ${o.pid} on ${o.host} · up since ${ago(new Date(o.since).toISOString())}`),
            h('div', { class: 'shards' }, ...mine.map((n) => h('span', { class: 'shard', 'data-shard': n }, String(n)))),
          );
        }),
        unowned.length > 0 &&
          h(
            'article',
            { class: 'card orc unowned' },
            h('header', {}, h('h3', {}, 'unowned'), h('span', { class: 'muted' }, `${unowned.length} ${unowned.length === 1 ? 'shard' : 'shards'}`)),
            h('div', { class: 'shards' }, ...unowned.map((n) => h('span', { class: 'shard' }, String(n)))),
          ),
      );
    } catch (e) {
      fill(problem, failure('Could not read the cluster.', e));
    }
  };
  return every(2000, load);
};
