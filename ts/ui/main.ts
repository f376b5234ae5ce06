// The visualizer's entry: one script for every /ui page; the path picks the page.
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

async function start(): Promise<void> {
  const app = document.getElementById('app');
  if (!app) return;
  const path = location.pathname;
  const route = ROUTES.find(([re]) => re.test(path));
  const main = h('main', { id: 'page' });
  const nav = (key: string, href: string, text: string) =>
    h('a', { href, class: route?.[2] === key ? 'active' : '' }, text);
  fill(
    app,
    h('nav', { class: 'top' }, link('/ui', h('strong', {}, 'Quark')), nav('units', '/ui', 'Work units'), nav('cluster', '/ui/cluster', 'Cluster')),
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
