// The visualizer in a real browser (Debian's chromium through playwright-core) against a running
// stack: api, orc and computes as processes, every step slowed so a boot can be watched while it
// runs. Screenshots go to a temporary folder, or to docs/ with QUARK_UI_SCREENSHOTS=1.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { http, startCluster, waitForUnit, type TestCluster } from './cluster.js';
import { repoRoot, useProcessGroup, waitFor } from './support/index.js';
import type { WorkUnitId } from '../ts/common/ids.js';
import type { WorkUnitRecord } from '../ts/common/model.js';

const CHROMIUM = '/usr/bin/chromium';
// Each step takes this long on the computes: long enough that a page opened right after the
// request is live before the first recorded step, even on a busy 2-core machine.
const STEP_DELAY_MS = 2000;
const BUILD_STEPS = ['allocate_vcpu', 'allocate_storage', 'define', 'start'];
/** The build chart's path, top to bottom: where a unit waits, its steps, success. */
const BUILD_PATH = ['resume', ...BUILD_STEPS, 'SUCCEEDED'];
const flavor = { vcpus: 2, ram_mb: 2048, disk_gb: 20 };

const group = useProcessGroup();
let c: TestCluster;
let browser: Browser | undefined;
const shotsDir = process.env.QUARK_UI_SCREENSHOTS ? join(repoRoot(), 'docs') : mkdtempSync(join(tmpdir(), 'quark-ui-'));
/** Every URL any page asked for, to prove nothing comes from elsewhere. */
const requested: string[] = [];
const pageErrors: string[] = [];
let bootedServer = '';
let bootedUnit = '';

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: scripts/ensure-deps.sh --browser installs Debian's chromium`);
  c = await startCluster(group, {
    computes: 2,
    orcs: 1,
    // Nothing here is about failover: a generous session keeps a loaded machine from expiring one.
    sessionTimeoutMs: 10_000,
    computeArgs: ['--vcpus', '8', '--ram-mb', '16384', '--disk-gb', '200', '--step-delay-ms', String(STEP_DELAY_MS)],
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close().catch(() => {});
  await c?.close();
});

/**
 * A fresh page whose every request and script error is recorded; closed by the caller's finally.
 * `expect404`: one API path the page is meant to find missing. Chromium logs every 404 response
 * as a console error; that one alone is not counted, any other error still is.
 */
async function open(path: string, expect404?: string): Promise<Page> {
  const ctx = await browser!.newContext({ viewport: { width: 1360, height: 900 } });
  // The token a visitor gives once, as the token prompt leaves it (that prompt has its own test).
  await ctx.addInitScript((token) => localStorage.setItem('quark-token', token), c.token);
  const page = await ctx.newPage();
  page.on('request', (r) => requested.push(r.url()));
  page.on('pageerror', (e) => pageErrors.push(`${path}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const expected =
      expect404 !== undefined && /^Failed to load resource: .*\b404\b/.test(m.text()) && m.location().url === `${c.api}${expect404}`;
    if (!expected) pageErrors.push(`${path}: console: ${m.text()} (${m.location().url})`);
  });
  await page.goto(`${c.api}${path}`);
  return page;
}

async function closePage(page: Page | undefined): Promise<void> {
  await page?.context().close().catch(() => {});
}

const nodeAttr = (page: Page, node: string, attr: string) => page.getAttribute(`[data-state-node="${node}"]`, attr);
const nodeDetail = (page: Page, node: string) => page.textContent(`[data-state-node="${node}"] .node-detail`);

/** What a work-unit page shows at one instant, read in one go so it cannot change mid-read. */
interface Shown {
  current: string | null;
  live: string | null;
  status: Record<string, string | null>;
  detail: Record<string, string | null>;
  row: Record<string, string | null>;
}
const snapshot = (page: Page): Promise<Shown> =>
  page.evaluate(() => {
    const out: Shown = { current: null, live: document.getElementById('live')?.getAttribute('data-live') ?? null, status: {}, detail: {}, row: {} };
    for (const n of document.querySelectorAll('[data-state-node]')) {
      const name = n.getAttribute('data-state-node')!;
      if (n.getAttribute('data-current') === 'true') out.current = name;
      out.status[name] = n.getAttribute('data-status');
      out.detail[name] = n.querySelector('.node-detail')?.textContent ?? null;
    }
    for (const r of document.querySelectorAll('.tl-row[data-step]')) out.row[r.getAttribute('data-step')!] = r.getAttribute('data-status');
    return out;
  });

/** "812 ms" / "1.23 s" → ms */
function parseDuration(text: string | null): number {
  const m = /^([\d.]+) (ms|s)/.exec(text ?? '');
  if (!m) throw new Error(`not a duration: ${JSON.stringify(text)}`);
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
}

describe('work-unit page', () => {
  it('follows a boot live: the current step moves down the drawn chart, done steps show their time', async () => {
    const accepted = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'watched-vm', flavor } });
    expect(accepted.status).toBe(202);
    bootedUnit = accepted.body.work_unit_id;
    bootedServer = accepted.body.server_id;
    let page: Page | undefined;
    try {
      page = await open(`/ui/work-units/${bootedUnit}`);
      await page.waitForSelector('svg.statechart [data-state-node="SUCCEEDED"]');
      // A marker that a reload would wipe: every change below must arrive through the stream.
      await page.evaluate(() => ((window as unknown as { __noReload: boolean }).__noReload = true));

      // The chart is the build machine's: its states, laid out top-down by ELK.
      const drawn = await page.$$eval('[data-state-node]', (els) => els.map((e) => e.getAttribute('data-state-node')));
      expect(drawn).toEqual(['resume', ...BUILD_STEPS, 'SUCCEEDED', 'FAILED']);
      const ys = await page.$$eval('[data-state-node] .node-box', (els) => els.map((e) => Number(e.getAttribute('y'))));
      for (let i = 1; i <= BUILD_STEPS.length + 1; i++) expect(ys[i]).toBeGreaterThan(ys[i - 1]!);
      expect(await page.$$eval('.edge path', (els) => els.length)).toBe(BUILD_STEPS.length * 3 + 1);

      // Follow the page until it shows SUCCEEDED, reading it every few milliseconds: the current
      // state only moves down the chart, each state shown is drawn consistently, and changes
      // arrive through the stream while the page is open. The compute commits every step on its
      // own; the first commit is also its intake, so allocate_vcpu runs while the unit is still
      // SCHEDULED (shown on `resume`), and each later step is seen running.
      await page.waitForSelector('#live[data-live="live"]', { timeout: 10_000 });
      const seen: string[] = [];
      let shot = false;
      const deadline = Date.now() + 30_000;
      for (;;) {
        const s = await snapshot(page);
        if (s.current !== null && s.current !== seen[seen.length - 1]) {
          const at = BUILD_PATH.indexOf(s.current);
          expect(at, `current state ${s.current}`).toBeGreaterThanOrEqual(0);
          if (seen.length > 0) expect(at).toBeGreaterThan(BUILD_PATH.indexOf(seen[seen.length - 1]!));
          seen.push(s.current);
          if (s.current === 'SUCCEEDED') break;
          expect(s.live).toBe('live');
          for (const [i, step] of BUILD_STEPS.entries()) {
            const pos = i + 1; // in BUILD_PATH
            if (pos < at) {
              expect(s.status[step]).toBe('done');
              expect(s.row[step]).toBe('done');
              expect(parseDuration(s.detail[step] ?? null)).toBeGreaterThanOrEqual(STEP_DELAY_MS);
            } else if (pos === at) {
              expect(s.status[step]).toBe('current');
              expect(s.detail[step]).toBe('running');
              expect(s.row[step]).toBe('current');
            } else {
              expect(s.status[step]).toBe('pending');
              expect(s.row[step]).toBe('pending');
            }
          }
          if (!shot && at > 0) {
            shot = true;
            await page.screenshot({ path: join(shotsDir, 'ui-work-unit.png'), fullPage: true });
          }
        }
        if (Date.now() > deadline) throw new Error(`the page did not reach SUCCEEDED; it showed ${seen.join(' → ')}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      // At least: waiting, a step running, done; every change after the first drawing came live.
      expect(seen.length, `the page showed ${seen.join(' → ')}`).toBeGreaterThanOrEqual(3);
      expect(seen.filter((n) => BUILD_STEPS.includes(n)), `the page showed ${seen.join(' → ')}`).toEqual(BUILD_STEPS.slice(1));

      await page.waitForSelector('[data-state-node="SUCCEEDED"][data-current="true"]', { timeout: 15_000 });
      expect(await page.textContent('#unit-state')).toBe('SUCCEEDED');
      await page.waitForSelector('#live[data-live="finished"]');
      for (const step of BUILD_STEPS) {
        expect(await nodeAttr(page, step, 'data-status')).toBe('done');
        const shown = parseDuration(await nodeDetail(page, step));
        expect(shown).toBeGreaterThanOrEqual(STEP_DELAY_MS);
        expect(parseDuration(await page.textContent(`.tl-row[data-step="${step}"] .tl-dur`))).toBe(shown);
      }
      // The drawn durations are the recorded ones.
      const unit = await waitForUnit(c.api, bootedUnit);
      for (const s of unit.steps_completed) {
        const shown = parseDuration(await nodeDetail(page, s.name));
        expect(Math.abs(shown - s.time_to_completion_ms)).toBeLessThanOrEqual(s.time_to_completion_ms >= 1000 ? 10 : 1);
      }
      expect(await page.getAttribute('[data-edge="start->SUCCEEDED:done"]', 'data-taken')).toBe('true');
      expect(await page.getAttribute('[data-edge="start->FAILED:error"]', 'data-taken')).toBe('false');
      expect(await page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload)).toBe(true);
    } finally {
      await closePage(page);
    }
  });

  it('a unit no compute can hold: FAILED with NO_VALID_HOST, its message and the filter counts', async () => {
    const r = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'too-big', flavor: { vcpus: 1000, ram_mb: 1024, disk_gb: 1 } } });
    const u = await waitForUnit(c.api, r.body.work_unit_id);
    expect(u.error?.code).toBe('NO_VALID_HOST');
    let page: Page | undefined;
    try {
      page = await open(`/ui/work-units/${u.id}`);
      await page.waitForSelector('[data-state-node="FAILED"][data-current="true"]');
      expect(await nodeAttr(page, 'FAILED', 'data-status')).toBe('failed');
      expect(await nodeAttr(page, 'resume', 'data-status')).toBe('failed');
      expect(await nodeDetail(page, 'resume')).toBe('NO_VALID_HOST');
      for (const step of BUILD_STEPS) expect(await nodeAttr(page, step, 'data-status')).toBe('pending');
      expect(await page.textContent('.error-card .error-code')).toBe('NO_VALID_HOST');
      expect(await page.textContent('.error-card .error-message')).toBe(u.error?.message);
      expect(await page.textContent('.error-card .error-message')).toMatch(/fits removed 2/);
      expect(await page.textContent('.rejected tr[data-filter="fits"] td.num')).toBe('2');
      expect(await page.getAttribute('.tl-row[data-step="placement"]', 'data-status')).toBe('failed');
      expect(await page.getAttribute('#live', 'data-live')).toBe('finished');
    } finally {
      await closePage(page);
    }
  });

  it('shows hostile text as text: an error message full of markup stays inert', async () => {
    // A record as a broken or malicious writer could leave it: the message is HTML.
    const id = '0a0a0a0a-0000-4000-8000-00000000beef' as WorkUnitId;
    const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>&amp; "quoted"';
    const rec: WorkUnitRecord = {
      id,
      kind: 'build',
      state: 'FAILED',
      server_id: '0a0a0a0a-0000-4000-8000-00000000cafe' as WorkUnitRecord['server_id'],
      shard: 0,
      compute_id: null,
      attempts: 1,
      tried: [],
      steps_completed: [{ name: 'allocate_vcpu', time_to_completion_ms: 3, completed_at: Date.now() }],
      steps_left: ['allocate_storage', 'define', 'start'],
      error: { code: 'STEP_FAILED', message: `step allocate_storage failed: ${evil}`, rejected: { '<b>filter</b>': 1 } },
      created_at: Date.now() - 50,
      updated_at: Date.now(),
      finished_at: Date.now(),
    };
    await c.zk.create(c.paths.workUnit(id), rec);
    let page: Page | undefined;
    try {
      page = await open(`/ui/work-units/${id}`);
      await page.waitForSelector('.error-card');
      expect(await page.textContent('.error-card .error-message')).toBe(rec.error!.message);
      expect(await page.textContent('.rejected tr td')).toBe('<b>filter</b>');
      expect(await page.$$eval('main img, main script, main b', (els) => els.length)).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
      expect(await nodeAttr(page, 'allocate_storage', 'data-status')).toBe('failed');
    } finally {
      await closePage(page);
    }
  });

  it('an unknown id says so instead of drawing an empty chart', async () => {
    let page: Page | undefined;
    try {
      // The page asks the API for the unit and gets the 404 it shows as a message.
      page = await open('/ui/work-units/00000000-0000-4000-8000-000000000000', '/v1/work-units/00000000-0000-4000-8000-000000000000');
      await page.waitForSelector('.failure');
      expect(await page.textContent('.failure')).toMatch(/No work unit 00000000-0000-4000-8000-000000000000/);
      expect(await page.$('svg.statechart')).toBeNull();
    } finally {
      await closePage(page);
    }
  });
});

describe('list, server and cluster pages', () => {
  it('/ui lists units newest first and filters by state and kind', async () => {
    expect(bootedUnit).not.toBe('');
    let page: Page | undefined;
    try {
      page = await open('/ui');
      await page.waitForSelector(`#units tr[data-unit="${bootedUnit}"]`);
      await page.screenshot({ path: join(shotsDir, 'ui-work-units.png'), fullPage: true });
      const rows = await page.$$eval('#units tr[data-unit]', (els) => els.map((e) => e.getAttribute('data-unit')));
      const api = (await http<Array<{ id: string; created_at: string }>>(`${c.api}/v1/work-units`)).body;
      expect(rows).toEqual(api.map((u) => u.id));
      const created = api.map((u) => Date.parse(u.created_at));
      expect([...created].sort((a, b) => b - a)).toEqual(created);

      await page.selectOption('#filter-state', 'FAILED');
      await page.waitForFunction(() => [...document.querySelectorAll('#units tr[data-unit]')].every((r) => r.getAttribute('data-state') === 'FAILED'));
      expect(page.url()).toMatch(/\/ui\?state=FAILED$/);
      expect(await page.$(`#units tr[data-unit="${bootedUnit}"]`)).toBeNull();
      expect(await page.$$eval('#units tr[data-unit]', (els) => els.length)).toBeGreaterThanOrEqual(2);

      await page.selectOption('#filter-state', 'SUCCEEDED');
      await page.selectOption('#filter-kind', 'build');
      await page.waitForSelector(`#units tr[data-unit="${bootedUnit}"]`);
      const shown = await page.$$eval('#units tr[data-unit]', (els) => els.map((e) => [e.getAttribute('data-state'), e.getAttribute('data-kind')]));
      for (const [state, kind] of shown) expect([state, kind]).toEqual(['SUCCEEDED', 'build']);
      await page.click(`#units tr[data-unit="${bootedUnit}"] a[href^="/ui/work-units/"]`);
      await page.waitForSelector('[data-state-node="SUCCEEDED"][data-current="true"]');
    } finally {
      await closePage(page);
    }
  });

  it('/ui/servers/:id: the VM lifecycle in its state, its units, and a stop seen live', async () => {
    let page: Page | undefined;
    try {
      page = await open(`/ui/servers/${bootedServer}`);
      await page.waitForSelector('[data-state-node="ACTIVE"][data-current="true"]');
      const drawn = await page.$$eval('[data-state-node]', (els) => els.map((e) => e.getAttribute('data-state-node')));
      expect(drawn.sort()).toEqual(['ACTIVE', 'BUILDING', 'DELETED', 'DELETING', 'ERROR', 'LOST', 'STOPPED']);
      expect(await page.textContent('.server-name')).toBe('watched-vm');
      await page.waitForSelector(`#server-units tr[data-unit="${bootedUnit}"][data-state="SUCCEEDED"]`);
      await page.waitForSelector('#live[data-live="live"]');

      const stop = await http(`${c.api}/v1/servers/${bootedServer}/actions`, { method: 'POST', body: { action: 'stop' } });
      expect(stop.status).toBe(202);
      const stopUnit = stop.body.work_unit_id as string;
      // While the stop runs the page shows it; then the machine moves to STOPPED, with no reload.
      await page.waitForSelector(`#server-units tr[data-unit="${stopUnit}"]`, { timeout: 10_000 });
      await page.screenshot({ path: join(shotsDir, 'ui-server.png'), fullPage: true });
      await page.waitForSelector('[data-state-node="STOPPED"][data-current="true"]', { timeout: 15_000 });
      await page.waitForSelector(`#server-units tr[data-unit="${stopUnit}"][data-state="SUCCEEDED"]`, { timeout: 15_000 });
      expect(await nodeAttr(page, 'ACTIVE', 'data-current')).toBe('false');
      const order = await page.$$eval('#server-units tr[data-unit]', (els) => els.map((e) => e.getAttribute('data-unit')));
      expect(order).toEqual([stopUnit, bootedUnit]);
    } finally {
      await closePage(page);
    }
  });

  it('/ui/cluster: computes with capacity bars, orcs with their shards', async () => {
    let page: Page | undefined;
    try {
      page = await open('/ui/cluster');
      await page.waitForSelector('[data-compute="compute-2"] .bar');
      await page.waitForSelector('[data-orc="orc-1"] .shard');
      await page.screenshot({ path: join(shotsDir, 'ui-cluster.png'), fullPage: true });
      const computes = (await http<Array<{ id: string; capacity: Record<string, number>; free: Record<string, number> }>>(`${c.api}/v1/computes`)).body;
      expect(computes).toHaveLength(2);
      for (const comp of computes) {
        for (const r of ['vcpus', 'ram_mb', 'disk_gb', 'bandwidth_mbps']) {
          const bar = `[data-compute="${comp.id}"] .bar[data-resource="${r}"]`;
          expect(Number(await page.getAttribute(bar, 'data-capacity'))).toBe(comp.capacity[r]);
          expect(Number(await page.getAttribute(bar, 'data-used'))).toBe(comp.capacity[r]! - comp.free[r]!);
        }
      }
      // The stopped VM still holds its flavor on one compute.
      const used = await page.$$eval('.bar[data-resource="vcpus"]', (els) => els.map((e) => Number(e.getAttribute('data-used'))));
      expect(used.reduce((a, b) => a + b, 0)).toBe(flavor.vcpus);
      const shards = await page.$$eval('[data-orc="orc-1"] .shard', (els) => els.length);
      const owners = (await http<Record<string, string | null>>(`${c.api}/v1/shards`)).body;
      expect(shards).toBe(Object.values(owners).filter((o) => o === 'orc-1').length);
      expect(shards).toBe(Object.keys(owners).length);
    } finally {
      await closePage(page);
    }
  });
});

describe('the token', () => {
  it('is asked for once: a bad one is refused with its code, a good one is kept and the page draws', async () => {
    const ctx = await browser!.newContext({ viewport: { width: 1360, height: 900 } });
    try {
      const page = await ctx.newPage();
      page.on('request', (r) => requested.push(r.url()));
      page.on('pageerror', (e) => pageErrors.push(`token prompt: ${e.message}`));
      await page.goto(`${c.api}/ui`);
      await page.waitForSelector('#token-form');
      expect(await page.$('#page')).toBeNull(); // nothing of the cluster before a token
      await page.fill('#token-input', 'not-a-token');
      await page.click('#token-form button[type=submit]');
      await page.waitForFunction(() => /TOKEN_MALFORMED/.test(document.getElementById('token-error')?.textContent ?? ''));
      expect(await page.evaluate(() => localStorage.getItem('quark-token'))).toBeNull();
      await page.fill('#token-input', c.token);
      await page.click('#token-form button[type=submit]');
      await page.waitForSelector('#page[data-ready="true"]');
      expect(await page.textContent('#whoami')).toBe('admin · admin');
      expect(await page.evaluate(() => localStorage.getItem('quark-token'))).toBe(c.token);
      // A reload does not ask again.
      await page.reload();
      await page.waitForSelector('#page[data-ready="true"]');
      expect(await page.$('#token-form')).toBeNull();
    } finally {
      await ctx.close().catch(() => {});
    }
  });

  it('never travels in a URL: event streams carry a stream ticket', () => {
    expect(requested.some((u) => u.includes(c.token))).toBe(false);
    const streams = requested.filter((u) => /\/events\?/.test(u));
    expect(streams.length).toBeGreaterThan(0);
    for (const u of streams) expect(new URL(u).searchParams.get('ticket')).toMatch(/^qst\./);
  });
});

describe('what the pages leave behind', () => {
  it('closed pages hold no stream and no ZooKeeper watch', async () => {
    // Open a live page, then drop it: the server must notice and let go. A boot runs long enough
    // (four steps) for the page to be live before the unit finishes.
    const r = await http(`${c.api}/v1/servers`, { method: 'POST', body: { name: 'dropped-page-vm', flavor } });
    expect(r.status).toBe(202);
    let page: Page | undefined;
    try {
      page = await open(`/ui/work-units/${r.body.work_unit_id}`);
      await page.waitForSelector('#live[data-live="live"]');
      const during = (await http(`${c.api}/v1/ui/feed`)).body;
      expect(during.streams).toBeGreaterThanOrEqual(1);
      expect(during.listeners).toBeGreaterThanOrEqual(1);
    } finally {
      await closePage(page);
    }
    await waitFor(
      async () => {
        const f = (await http<{ streams: number; listeners: number }>(`${c.api}/v1/ui/feed`)).body;
        return f.streams === 0 && f.listeners === 0 ? f : undefined;
      },
      { what: 'the feed to drop every stream and listener', timeoutMs: 10_000 },
    );
    await waitForUnit(c.api, r.body.work_unit_id);
  });

  it('every page loaded only from quark-api, without script errors', () => {
    expect(requested.length).toBeGreaterThan(10);
    const elsewhere = requested.filter((u) => !u.startsWith(`${c.api}/`));
    expect(elsewhere).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
