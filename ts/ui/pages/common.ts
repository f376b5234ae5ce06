// Pieces every page uses: the page signature, error boxes, a unit's error with its placement counts.
import { ApiFailure } from '../api.js';
import { h } from '../dom.js';
import type { ErrorView } from '../model.js';

/** Draws into `root`; resolves to a function that stops whatever the page keeps running. */
export type Page = (root: HTMLElement, param: string) => Promise<() => void>;

export function failure(what: string, err?: unknown): HTMLElement {
  const detail = err instanceof ApiFailure ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : null;
  return h('div', { class: 'card failure', role: 'alert' }, h('p', {}, what), detail && h('p', { class: 'muted' }, detail));
}

/**
 * A unit's error: its code, its message as text (it can hold names users chose), and for
 * NO_VALID_HOST how many computes each placement filter removed.
 */
export function errorPanel(e: ErrorView): HTMLElement {
  const rejected = Object.entries(e.rejected ?? {});
  return h(
    'section',
    { class: 'card error-card', 'data-error-code': e.code },
    h('h2', {}, 'Failed: ', h('code', { class: 'error-code' }, e.code)),
    h('p', { class: 'error-message' }, e.message),
    rejected.length > 0 &&
      h(
        'table',
        { class: 'rejected' },
        h('caption', {}, 'Computes removed by each placement filter'),
        h('thead', {}, h('tr', {}, h('th', {}, 'filter'), h('th', {}, 'removed'))),
        h(
          'tbody',
          {},
          ...rejected.map(([filter, n]) =>
            h('tr', { 'data-filter': filter, class: n > 0 ? 'hit' : '' }, h('td', {}, filter), h('td', { class: 'num' }, String(n))),
          ),
        ),
      ),
  );
}

/** Polls `fn` every `ms` while the tab is visible; returns a stop function. */
export function every(ms: number, fn: () => Promise<void>): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const loop = async (): Promise<void> => {
    if (stopped) return;
    if (!document.hidden) await fn().catch(() => {});
    if (!stopped) timer = setTimeout(() => void loop(), ms);
  };
  void loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
