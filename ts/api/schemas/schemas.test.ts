// Every enum the API validates or documents is one of Quark's vocabulary lists itself (the same
// array, not a copy): a list written again in a route would drift from the machines.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import * as V from '../../common/vocabulary.js';
import { DEFAULT_CONFIG } from '../../common/model.js';
import { Zk } from '../../zk/client.js';
import { Paths } from '../../zk/paths.js';
import { uniqueRoot, zkConnect } from '../../../test/support/index.js';
import { ApiStore } from '../store.js';
import { Listings } from '../listing.js';
import { serverRoutes } from '../routes/servers.js';
import { workUnitRoutes } from '../routes/work-units.js';
import { clusterRoutes } from '../routes/cluster.js';
import { uiRoutes } from '../routes/ui.js';
import { Operator } from '../operator.js';

const VOCABULARY: ReadonlyMap<unknown, string> = new Map(
  Object.entries(V)
    .filter(([, v]) => Array.isArray(v))
    .map(([k, v]) => [v, k]),
);

/** Every `enum` array anywhere in a schema, with where it is. */
function enumsIn(schema: unknown, at: string, out: Array<{ at: string; values: unknown }>): void {
  if (schema === null || typeof schema !== 'object') return;
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'enum') out.push({ at, values: v });
    else enumsIn(v, `${at}.${k}`, out);
  }
}

let zk: Zk;
let app: FastifyInstance;
const routes: Array<{ route: string; schema: unknown }> = [];

beforeAll(async () => {
  zk = await Zk.connect(zkConnect());
  const paths = new Paths(uniqueRoot('schemas'));
  const store = new ApiStore(zk, paths, DEFAULT_CONFIG);
  app = Fastify({ logger: false });
  app.addHook('onRoute', (r) => void routes.push({ route: `${String(r.method)} ${r.url}`, schema: r.schema }));
  const listings = new Listings(zk, paths);
  await app.register(serverRoutes, { prefix: '/v1', store, listings });
  await app.register(workUnitRoutes, { prefix: '/v1', store, listings });
  await app.register(clusterRoutes, { prefix: '/v1', store, operator: new Operator(zk, paths, DEFAULT_CONFIG) });
  await app.register(uiRoutes, { zk, paths });
  await app.ready();
});
afterAll(async () => {
  await app?.close();
  await zk?.close();
});

describe('API schemas speak the vocabulary', () => {
  it('every enum of every route is a vocabulary list itself', () => {
    const found: Array<{ at: string; values: unknown }> = [];
    for (const r of routes) enumsIn(r.schema, r.route, found);
    // The routes that filter or describe by state, status, kind, action and step all have one.
    expect(found.length).toBeGreaterThanOrEqual(8);
    for (const e of found) expect(VOCABULARY.get(e.values), `${e.at}: ${JSON.stringify(e.values)}`).toBeDefined();
    const used = new Set(found.map((e) => VOCABULARY.get(e.values)));
    for (const name of ['ACTIONS', 'VM_STATUSES', 'WORK_KINDS', 'WORK_UNIT_STATES', 'STEP_NAMES']) expect(used).toContain(name);
  });
});

describe('the vocabulary itself', () => {
  it('terminal states are states, actions are kinds, a stored status is never DELETED', () => {
    for (const s of V.TERMINAL_STATES) expect(V.WORK_UNIT_STATES).toContain(s);
    for (const a of V.ACTIONS) expect(V.WORK_KINDS).toContain(a);
    expect(V.SERVER_STATUSES).toEqual(V.VM_STATUSES.filter((s) => s !== 'DELETED'));
  });

  it('every step name belongs to some kind, and no kind repeats a step', () => {
    for (const k of V.WORK_KINDS) expect(new Set(V.KINDS[k]).size).toBe(V.KINDS[k].length);
    expect([...V.STEP_NAMES].sort()).toEqual([...new Set(V.WORK_KINDS.flatMap((k) => V.KINDS[k]))].sort());
  });

  it('isWorkKind knows the kinds and nothing an object inherits', () => {
    for (const k of V.WORK_KINDS) expect(V.isWorkKind(k)).toBe(true);
    for (const x of ['toString', 'constructor', '__proto__', 'BUILD', '', 3, null]) expect(V.isWorkKind(x)).toBe(false);
  });
});
