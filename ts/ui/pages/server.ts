// /ui/servers/:id — the VM's lifecycle machine (vmMachine, laid out by ELK) in its current state,
// and every work unit that touched it; live through the server's event stream.
import { vmMachine } from '../../actors/vm.js';
import { isWorkKind, stepsOf } from '../../actors/kinds.js';
import { ApiFailure, LiveFeed, authHeader, getJson, parseFeed } from '../api.js';
import { drawChart, layOut } from '../chart.js';
import { ago, badge, fill, h, link, shortId, unitHref } from '../dom.js';
import { formatMs, type NodeView, type ServerView, type WorkUnitView } from '../model.js';
import { chartOf } from '../statechart.js';
import { errorPanel, failure, type Page } from './common.js';

export const serverPage: Page = async (root, id) => {
  document.title = `Server ${id.slice(0, 8)} · Quark`;
  fill(root, h('p', { class: 'muted' }, 'Loading server…'));
  let server: ServerView | null = null;
  let units: WorkUnitView[] = [];
  try {
    const [s, u] = await Promise.allSettled([
      getJson<ServerView>(`/v1/servers/${encodeURIComponent(id)}`),
      getJson<WorkUnitView[]>(`/v1/work-units?server_id=${encodeURIComponent(id)}&limit=200`),
    ]);
    if (s.status === 'fulfilled') server = s.value.body;
    else if (!(s.reason instanceof ApiFailure && s.reason.status === 404)) throw s.reason;
    if (u.status === 'fulfilled') units = u.value.body;
    else throw u.reason;
  } catch (e) {
    fill(root, failure('Could not load the server.', e));
    return () => {};
  }
  if (!server && units.length === 0) {
    fill(root, failure(`No server ${id}, and no work unit ever touched one by that id.`));
    return () => {};
  }

  const chart = chartOf(vmMachine);
  const drawn = drawChart(await layOut(chart, 'DOWN'), 'Lifecycle of a VM');
  const status = h('span', { id: 'server-status' });
  const live = h('span', { id: 'live', class: 'live', 'data-live': 'connecting' }, 'connecting…');
  const meta = h('dl', { class: 'meta' });
  const errorEl = h('div');
  const rows = h('tbody', { id: 'server-units' });
  const title = h('h1', {}, 'Server ');
  const consoleEl = h('pre', { id: 'server-console', class: 'console' });
  const consoleNote = h('p', { class: 'muted' }, 'Loading the console…');

  fill(
    root,
    h('header', { class: 'page-head' }, title, h('div', { class: 'head-side' }, status, live)),
    meta,
    errorEl,
    h(
      'div',
      { class: 'unit-grid server-grid' },
      h('section', { class: 'card chart-card' }, h('h2', {}, 'VM lifecycle ', h('code', {}, chart.machineId)), h('div', { class: 'chart-scroll' }, drawn.element)),
      h(
        'section',
        { class: 'card table-card' },
        h('h2', {}, 'Work units on this server'),
        h(
          'table',
          { class: 'grid' },
          h('thead', {}, h('tr', {}, ...['created', 'work unit', 'kind', 'state', 'steps', 'took', 'error'].map((c) => h('th', {}, c)))),
          rows,
        ),
      ),
    ),
    h('section', { class: 'card console-card' }, h('h2', {}, 'Serial console (last 40 lines)'), consoleNote, consoleEl),
  );

  // The guest's console, as GET /v1/servers/:id/console serves it. Only computes that run real
  // guests have one (GET /v1/servers/:id says so in `console`); asked again when the server moves.
  let consoleOf: string | null | undefined;
  let hasConsole = server?.console === true;
  const refreshConsole = async (): Promise<void> => {
    try {
      if (server && server.compute_id !== consoleOf) {
        consoleOf = server.compute_id;
        hasConsole = (await getJson<ServerView>(`/v1/servers/${encodeURIComponent(id)}`)).body.console === true;
      }
      if (!server || !hasConsole) {
        fill(consoleNote, !server ? 'deleted' : server.compute_id ? `compute ${server.compute_id} runs no real guests (libvirt's test driver): no console` : 'not on a compute yet');
        fill(consoleEl);
        return;
      }
      const res = await fetch(`/v1/servers/${encodeURIComponent(id)}/console?lines=40`, { headers: authHeader() });
      if (!res.ok) {
        fill(consoleNote, `no console (HTTP ${res.status})`);
        return;
      }
      fill(consoleNote);
      fill(consoleEl, await res.text());
    } catch (e) {
      fill(consoleNote, `could not read the console: ${(e as Error).message}`);
    }
  };
  consoleOf = server?.compute_id;
  void refreshConsole();
  const consoleTimer = setInterval(() => void refreshConsole(), 2000);

  const renderServer = (): void => {
    if (!server) {
      fill(title, 'Server ', h('code', { class: 'id' }, id), ' ', h('span', { class: 'muted' }, '(deleted)'));
      fill(status, badge('DELETED'));
      fill(meta);
      fill(errorEl);
      const views = new Map<string, NodeView>([['DELETED', { status: 'current', current: true, detail: 'record removed' }]]);
      drawn.update(views);
      return;
    }
    fill(title, 'Server ', h('span', { class: 'server-name' }, server.name), ' ', h('code', { class: 'id' }, server.id));
    fill(status, badge(server.status));
    fill(
      meta,
      h('dt', {}, 'compute'),
      h('dd', {}, server.compute_id ?? '—'),
      h('dt', {}, 'flavor'),
      h('dd', {}, `${server.flavor.vcpus} vCPU, ${server.flavor.ram_mb} MB RAM, ${server.flavor.disk_gb} GB disk`),
      h('dt', {}, 'zone'),
      h('dd', {}, server.zone ?? 'any'),
      h('dt', {}, 'labels'),
      h('dd', {}, server.labels.length ? server.labels.join(', ') : '—'),
      h('dt', {}, 'current task'),
      h('dd', {}, server.task ? link(unitHref(server.task), h('code', {}, shortId(server.task))) : 'none'),
      h('dt', {}, 'created'),
      h('dd', { title: server.created_at ?? '' }, ago(server.created_at)),
    );
    fill(errorEl, server.last_error ? errorPanel(server.last_error) : null);
    drawn.update(new Map([[server.status, { status: 'current', current: true, detail: server.task ? 'work in progress' : null }]]));
  };

  const renderUnits = (): void => {
    units.sort((a, b) => Date.parse(b.created_at ?? '') - Date.parse(a.created_at ?? '') || b.id.localeCompare(a.id));
    fill(
      rows,
      ...units.map((u) => {
        const took = u.created_at && u.finished_at ? Date.parse(u.finished_at) - Date.parse(u.created_at) : null;
        return h(
          'tr',
          { 'data-unit': u.id, 'data-state': u.state },
          h('td', { title: u.created_at ?? '' }, ago(u.created_at)),
          h('td', {}, link(unitHref(u.id), h('code', {}, shortId(u.id)))),
          h('td', {}, u.kind),
          h('td', {}, badge(u.state)),
          h('td', { class: 'num' }, `${u.steps_completed.length}/${isWorkKind(u.kind) ? stepsOf(u.kind).length : '?'}`),
          h('td', { class: 'num' }, took === null ? '—' : formatMs(took)),
          h('td', { class: 'error-cell', title: u.error?.message ?? '' }, u.error?.code ?? ''),
        );
      }),
    );
  };
  renderServer();
  renderUnits();

  const feed = new LiveFeed(live);
  const setLive = (mode: string, text: string) => feed.set(mode, text);
  const close = () => {
    clearInterval(consoleTimer);
    feed.close();
  };
  if (!server) {
    setLive('closed', 'deleted');
  } else {
    const source = feed.open(`/v1/servers/${encodeURIComponent(id)}/events`);
    source.addEventListener('server', (ev) => {
      server = parseFeed<{ server: ServerView }>(ev as MessageEvent<string>).server;
      renderServer();
    });
    source.addEventListener('unit', (ev) => {
      const u = parseFeed<{ unit: WorkUnitView }>(ev as MessageEvent<string>).unit;
      units = [u, ...units.filter((x) => x.id !== u.id)];
      renderUnits();
    });
    source.addEventListener('gone', () => {
      close();
      server = null;
      renderServer();
      setLive('closed', 'deleted');
      // The delete unit finished in the same transaction that removed the server: show its end.
      void getJson<WorkUnitView[]>(`/v1/work-units?server_id=${encodeURIComponent(id)}&limit=200`)
        .then((r) => {
          units = r.body;
          renderUnits();
        })
        .catch(() => {});
    });
  }
  return close;
};
