// /ui/work-units/:id — the unit's statechart (its kind's machine, laid out by ELK) with the current
// step highlighted, a timeline of its steps, and its error; kept live by the unit's event stream.
import { workUnitMachine } from '../../actors/work-unit.js';
import { isWorkKind, stepsOf } from '../../actors/kinds.js';
import { ApiFailure, LiveFeed, getJson, parseFeed } from '../api.js';
import { drawChart, layOut, layoutEngine } from '../chart.js';
import { ago, badge, fill, h, link, serverHref } from '../dom.js';
import { formatMs, TERMINAL_STATES, timeline, unitNodes, type WorkUnitView } from '../model.js';
import { chartOf } from '../statechart.js';
import { errorPanel, failure, type Page } from './common.js';

export const workUnitPage: Page = async (root, id) => {
  document.title = `Work unit ${id.slice(0, 8)} · Quark`;
  fill(root, h('p', { class: 'muted' }, 'Loading work unit…'));
  // The layout engine is the page's largest chunk: fetch it while the unit is read.
  layoutEngine().catch(() => {}); // a failure is reported by layOut below
  let unit: WorkUnitView;
  try {
    unit = (await getJson<WorkUnitView>(`/v1/work-units/${encodeURIComponent(id)}`)).body;
  } catch (e) {
    fill(root, failure(e instanceof ApiFailure && e.status === 404 ? `No work unit ${id}.` : 'Could not load the work unit.', e));
    return () => {};
  }
  if (!isWorkKind(unit.kind)) {
    fill(root, failure(`Work unit ${id} has a kind this page does not know: ${unit.kind}`));
    return () => {};
  }
  const steps = stepsOf(unit.kind);
  const chart = chartOf(workUnitMachine(unit.kind));

  let offset = 0; // server clock − browser clock, from the feed's timestamps
  const now = () => Date.now() + offset;
  const live = h('span', { id: 'live', class: 'live', 'data-live': 'connecting' }, 'connecting…');

  // Live: the stream sends the record at once and on every change, then `end` when it finishes.
  // It opens before the chart is laid out (ELK takes a while on a busy machine), so a short step
  // is not missed meanwhile: the header and timeline follow at once, the chart once drawn.
  let render = (): void => {};
  const feed = new LiveFeed(live);
  const setLive = (mode: string, text: string) => feed.set(mode, text);
  const close = () => feed.close();
  if (TERMINAL_STATES.has(unit.state)) {
    setLive('finished', 'finished');
  } else {
    const source = feed.open(`/v1/work-units/${encodeURIComponent(id)}/events`);
    source.addEventListener('unit', (ev) => {
      const msg = parseFeed<{ unit: WorkUnitView }>(ev as MessageEvent<string>);
      if (msg.server_time) offset = msg.server_time - Date.now();
      unit = msg.unit;
      render();
    });
    source.addEventListener('end', () => {
      close();
      setLive('finished', 'finished');
    });
    source.addEventListener('gone', () => {
      close();
      setLive('closed', 'the work unit was removed');
    });
  }

  // Filled once ELK has laid the chart out; the rest of the page does not wait for it.
  let drawn: ReturnType<typeof drawChart> | undefined;
  const chartBox = h('div', { class: 'chart-scroll' }, h('p', { class: 'muted' }, 'Laying out the statechart…'));

  const state = h('span', { id: 'unit-state' });
  const meta = h('dl', { class: 'meta' });
  const timelineEl = h('div', { class: 'timeline', id: 'timeline' });
  const errorEl = h('div', { id: 'unit-error' });

  fill(
    root,
    h(
      'header',
      { class: 'page-head' },
      h('h1', {}, 'Work unit ', h('code', { class: 'id' }, unit.id)),
      h('div', { class: 'head-side' }, state, live),
    ),
    meta,
    errorEl,
    h(
      'div',
      { class: 'unit-grid' },
      h('section', { class: 'card chart-card' }, h('h2', {}, 'Statechart ', h('code', {}, chart.machineId)), chartBox),
      h('section', { class: 'card' }, h('h2', {}, 'Timeline'), timelineEl),
    ),
  );

  const renderTimeline = (): void => {
    const { rows, totalMs } = timeline(unit, steps, now());
    fill(
      timelineEl,
      ...rows.map((r) => {
        const bar = h('div', { class: 'tl-bar' });
        if (r.startMs !== null && r.durationMs !== null) {
          bar.style.left = `${(100 * r.startMs) / totalMs}%`;
          bar.style.width = `${Math.max(0.5, (100 * r.durationMs) / totalMs)}%`;
        } else {
          bar.hidden = true;
        }
        return h(
          'div',
          { class: 'tl-row', 'data-step': r.name, 'data-status': r.status },
          h('span', { class: 'tl-name' }, r.name),
          h('div', { class: 'tl-track' }, bar),
          h('span', { class: 'tl-dur' }, r.durationMs === null ? '—' : `${formatMs(r.durationMs)}${r.live ? '…' : ''}`),
        );
      }),
      h('div', { class: 'tl-total' }, 'total ', formatMs(totalMs), TERMINAL_STATES.has(unit.state) ? '' : ' so far'),
    );
  };

  render = (): void => {
    fill(state, badge(unit.state));
    const views = unitNodes(chart, unit);
    const tips = new Map<string, string>();
    if (unit.error) {
      for (const [name, v] of views) if (v.status === 'failed') tips.set(name, `${name}: ${unit.error.code}: ${unit.error.message}`);
    }
    drawn?.update(views, tips);
    const started = unit.created_at ? Date.parse(unit.created_at) : null;
    const finished = unit.finished_at ? Date.parse(unit.finished_at) : null;
    fill(
      meta,
      h('dt', {}, 'kind'),
      h('dd', {}, unit.kind),
      h('dt', {}, 'server'),
      h('dd', {}, link(serverHref(unit.server_id), h('code', {}, unit.server_id))),
      h('dt', {}, 'compute'),
      h('dd', {}, unit.compute_id ?? '—'),
      h('dt', {}, 'attempts'),
      h('dd', {}, String(unit.attempts)),
      h('dt', {}, 'steps'),
      h('dd', {}, `${unit.steps_completed.length} of ${steps.length} done`),
      h('dt', {}, 'created'),
      h('dd', { title: unit.created_at ?? '' }, ago(unit.created_at, now())),
      h('dt', {}, 'took'),
      h('dd', { id: 'unit-took' }, started && finished ? formatMs(finished - started) : '—'),
    );
    fill(errorEl, unit.error ? errorPanel(unit.error) : null);
    renderTimeline();
  };
  render();

  try {
    drawn = drawChart(await layOut(chart, 'DOWN'), `Statechart of a ${unit.kind} work unit`);
  } catch (e) {
    close();
    throw e;
  }
  fill(chartBox, drawn.element);
  render();

  // The running step's bar and duration grow between events.
  const ticker = setInterval(() => {
    if (!TERMINAL_STATES.has(unit.state)) renderTimeline();
  }, 250);
  return () => {
    clearInterval(ticker);
    close();
  };
};
