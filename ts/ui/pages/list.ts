// /ui — work units, newest first, filtered by state and kind (kept in the URL so a view can be
// shared); refreshed every few seconds.
import { stepsOf } from '../../actors/kinds.js';
import { WORK_KINDS, WORK_UNIT_STATES, isWorkKind } from '../../common/vocabulary.js';
import { getJson } from '../api.js';
import { ago, badge, fill, h, link, serverHref, shortId, unitHref } from '../dom.js';
import type { WorkUnitView } from '../model.js';
import { every, failure, type Page } from './common.js';

const STATES: readonly string[] = WORK_UNIT_STATES;
const LIMIT = 200;

function select(name: string, label: string, values: readonly string[], current: string): HTMLSelectElement {
  return h(
    'select',
    { name, id: `filter-${name}`, 'aria-label': label },
    h('option', { value: '' }, `any ${label}`),
    ...values.map((v) => h('option', { value: v, selected: v === current }, v)),
  );
}

export const listPage: Page = async (root) => {
  document.title = 'Work units · Quark';
  const params = new URLSearchParams(location.search);
  const filter = {
    state: STATES.includes(params.get('state') ?? '') ? params.get('state')! : '',
    kind: isWorkKind(params.get('kind')) ? params.get('kind')! : '',
  };
  const stateSel = select('state', 'state', STATES, filter.state);
  const kindSel = select('kind', 'kind', WORK_KINDS, filter.kind);
  const count = h('span', { class: 'muted', id: 'unit-count' });
  const body = h('tbody', { id: 'units' });
  const problem = h('div');
  fill(
    root,
    h('header', { class: 'page-head' }, h('h1', {}, 'Work units'), h('div', { class: 'head-side' }, count)),
    h('form', { class: 'filters', onsubmit: (e: Event) => e.preventDefault() }, stateSel, kindSel),
    problem,
    h(
      'table',
      { class: 'grid units' },
      h(
        'thead',
        {},
        h('tr', {}, ...['created', 'work unit', 'kind', 'state', 'steps', 'server', 'compute', 'error'].map((c) => h('th', {}, c))),
      ),
      body,
    ),
  );

  const load = async (): Promise<void> => {
    const q = new URLSearchParams({ limit: String(LIMIT) });
    if (filter.state) q.set('state', filter.state);
    if (filter.kind) q.set('kind', filter.kind);
    try {
      const { body: units, headers } = await getJson<WorkUnitView[]>(`/v1/work-units?${q}`);
      fill(problem);
      const total = Number(headers.get('x-total-count') ?? units.length);
      count.textContent = total > units.length ? `newest ${units.length} of ${total}` : `${units.length} work unit${units.length === 1 ? '' : 's'}`;
      fill(
        body,
        ...units.map((u) =>
          h(
            'tr',
            { 'data-unit': u.id, 'data-state': u.state, 'data-kind': u.kind },
            h('td', { title: u.created_at ?? '' }, ago(u.created_at)),
            h('td', {}, link(unitHref(u.id), h('code', {}, shortId(u.id)))),
            h('td', {}, u.kind),
            h('td', {}, badge(u.state)),
            h('td', { class: 'num' }, `${u.steps_completed.length}/${isWorkKind(u.kind) ? stepsOf(u.kind).length : '?'}`),
            h('td', {}, link(serverHref(u.server_id), h('code', {}, shortId(u.server_id)))),
            h('td', {}, u.compute_id ?? '—'),
            h('td', { class: 'error-cell', title: u.error?.message ?? '' }, u.error?.code ?? ''),
          ),
        ),
      );
      if (units.length === 0) fill(body, h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No work units match.')));
    } catch (e) {
      fill(problem, failure('Could not list work units.', e));
    }
  };

  let stop = every(3000, load);
  const onChange = (): void => {
    filter.state = stateSel.value;
    filter.kind = kindSel.value;
    const q = new URLSearchParams();
    if (filter.state) q.set('state', filter.state);
    if (filter.kind) q.set('kind', filter.kind);
    history.replaceState(null, '', `/ui${q.size ? `?${q}` : ''}`);
    stop();
    stop = every(3000, load);
  };
  stateSel.addEventListener('change', onChange);
  kindSel.addEventListener('change', onChange);
  return () => stop();
};
