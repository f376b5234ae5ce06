// The visualizer's entry: one script for every /ui page; the path picks the page.
import { ApiFailure, forgetToken, getJson, saveToken, storedToken } from './api.js';
import { fill, h, link } from './dom.js';
import { clusterPage } from './pages/cluster.js';
import { failure, type Page } from './pages/common.js';
import { listPage } from './pages/list.js';
import { serverPage } from './pages/server.js';
import { workUnitPage } from './pages/work-unit.js';

const ROUTES: Array<[RegExp, Page, string]> = [
  [/^\/ui\/?$/, listPage, 'units'],
  [/^\/ui\/work-units\/([^/]+)\/?$/, workUnitPage, 'units'],
  [/^\/ui\/servers\/([^/]+)\/?$/, serverPage, 'units'],
  [/^\/ui\/cluster\/?$/, clusterPage, 'cluster'],
];

interface Whoami {
  token_id: string;
  project: string;
  role: string;
}

/**
 * Asks for a token once: checked against the API (GET /v1/whoami), then kept in localStorage.
 * Resolves with who it is; until then the page shows only the form.
 */
function askForToken(app: HTMLElement, why: string | null): Promise<Whoami> {
  return new Promise((resolve) => {
    const input = h('input', { type: 'password', id: 'token-input', name: 'token', autocomplete: 'off', spellcheck: 'false', placeholder: 'quark.…', size: 60, required: true });
    const error = h('p', { class: 'error-message', id: 'token-error', role: 'alert' }, why ?? '');
    const form = h(
      'form',
      { class: 'card token-form', id: 'token-form' },
      h('h1', {}, 'Quark'),
      h('p', {}, 'This API needs a token. ', h('code', {}, 'quark up'), ' saved an admin token in ', h('code', {}, '.quark/token'), '; ', h('code', {}, 'quark token create'), ' makes others.'),
      h('label', { for: 'token-input' }, 'Token '),
      input,
      ' ',
      h('button', { type: 'submit' }, 'Use this token'),
      error,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      getJson<Whoami>('/v1/whoami', token)
        .then((r) => {
          saveToken(token);
          resolve(r.body);
        })
        .catch((e) => fill(error, e instanceof ApiFailure ? `${e.code}: ${e.message}` : 'the API did not answer'));
    });
    fill(app, form);
    input.focus();
  });
}

/** Who the stored token is, asking for one if there is none or the API refuses it. */
async function signIn(app: HTMLElement): Promise<Whoami> {
  if (storedToken()) {
    try {
      return (await getJson<Whoami>('/v1/whoami')).body;
    } catch (e) {
      if (!(e instanceof ApiFailure && e.status === 401)) throw e;
      return askForToken(app, `The saved token was refused (${e.code}); give another.`);
    }
  }
  return askForToken(app, null);
}

async function start(): Promise<void> {
  const app = document.getElementById('app');
  if (!app) return;
  let me: Whoami;
  try {
    me = await signIn(app);
  } catch (e) {
    fill(app, failure('The API did not answer.', e));
    return;
  }
  const path = location.pathname;
  const route = ROUTES.find(([re]) => re.test(path));
  const main = h('main', { id: 'page' });
  const nav = (key: string, href: string, text: string) =>
    h('a', { href, class: route?.[2] === key ? 'active' : '' }, text);
  fill(
    app,
    h(
      'nav',
      { class: 'top' },
      link('/ui', h('strong', {}, 'Quark')),
      nav('units', '/ui', 'Work units'),
      nav('cluster', '/ui/cluster', 'Cluster'),
      h('span', { class: 'whoami', id: 'whoami', 'data-role': me.role }, `${me.project} · ${me.role}`),
      h(
        'button',
        {
          type: 'button',
          id: 'forget-token',
          class: 'link-button',
          onclick: () => {
            forgetToken();
            location.reload();
          },
        },
        'Forget token',
      ),
    ),
    main,
  );
  if (!route) {
    fill(main, failure(`Nothing at ${path}.`));
    return;
  }
  const [re, page] = route;
  let param: string;
  try {
    param = decodeURIComponent(re.exec(path)?.[1] ?? '');
  } catch {
    fill(main, failure('That address is not valid.'));
    return;
  }
  try {
    const stop = await page(main, param);
    addEventListener('pagehide', stop);
    main.setAttribute('data-ready', 'true');
  } catch (e) {
    fill(main, failure('This page failed to draw.', e));
  }
}

void start();
