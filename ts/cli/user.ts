// The user's commands, through the REST API with the caller's token: servers, work units, images,
// and the cluster's computes, orcs and shards. Each takes `-o table|json` (json: the API's own
// shapes, so scripts read what the API documents) and `--url` (else $QUARK_URL, else the
// cluster `quark up` started).
import { existsSync, readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { Command, Option } from 'commander';
import { CliError, UsageError } from './errors.js';
import { ACTIONS, VM_STATUSES, WORK_KINDS, WORK_UNIT_STATES } from '../common/vocabulary.js';
import { apiUrl, json, listAll, raw, upload } from './client.js';
import {
  computesTable,
  exitFor,
  imagesTable,
  orcsTable,
  serverDetail,
  serversTable,
  shardsTable,
  unitDetail,
  unitsTable,
  type ComputeView,
  type ImageView,
  type OrcView,
  type ServerView,
  type UnitView,
} from './format.js';
import { displayFor, watchUnit } from './progress.js';
import { cordon, evacuate } from './computes.js';

export { UsageError };

type Output = 'table' | 'json';

interface ApiOpts {
  url?: string;
  api?: string;
  output: Output;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** `-o table|json` and `--url` (plus the older `--api`, hidden) on a user command. */
export function apiOptions(c: Command, output = true): Command {
  c.option('--url <url>', 'the API (default: $QUARK_URL, else .quark/cluster.json from quark up, else http://127.0.0.1:8080)');
  c.addOption(new Option('--api <url>', 'the API (older name of --url)').hideHelp());
  if (output) c.addOption(new Option('-o, --output <format>', 'how to print').choices(['table', 'json']).default('table'));
  return c;
}

const urlOf = (o: ApiOpts): string => apiUrl(o.url ?? o.api);
const print = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const printJson = (v: unknown): void => print(JSON.stringify(v, null, 2));

function positiveInt(name: string, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new UsageError(`--${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(v)}`);
    return n;
  };
}

const seconds = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--timeout must be a number of seconds above 0, got ${JSON.stringify(v)}`);
  return n;
};

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** A server named by id or by name (names are not unique: more than one match is refused). */
export async function resolveServer(api: string, ref: string): Promise<string> {
  if (UUID.test(ref)) return ref;
  const all = await listAll<ServerView>(api, '/v1/servers');
  const hits = all.filter((s) => s.name === ref);
  if (hits.length === 1) return hits[0]!.id;
  if (hits.length === 0) throw new CliError(`no server named ${JSON.stringify(ref)} (quark server list shows them)`);
  throw new CliError(`${hits.length} servers are named ${JSON.stringify(ref)}: ${hits.map((s) => s.id).join(', ')}; name one by its id`);
}

interface Accepted {
  work_unit_id: string;
  server_id?: string;
}

/**
 * After a 202: with --wait, the unit followed to its end (live on a terminal) and the exit code
 * from that end; without, the accepted ids.
 */
async function afterAccepted(api: string, accepted: Accepted, serverId: string, o: ApiOpts & { wait?: boolean; timeout: number }, what: string): Promise<number> {
  const body = { ...accepted, server_id: accepted.server_id ?? serverId };
  if (!o.wait) {
    if (o.output === 'json') printJson(body);
    else print(`${what}: server ${body.server_id}, work unit ${body.work_unit_id}\n(quark unit watch ${body.work_unit_id} follows it)`);
    return 0;
  }
  if (o.output === 'table') print(`${what}: server ${body.server_id}, work unit ${body.work_unit_id}`);
  // With -o json the progress goes to a terminal's stderr, so stdout stays one JSON document.
  const out = o.output === 'json' ? process.stderr : process.stdout;
  const display = o.output === 'json' ? (process.stderr.isTTY ? 'live' : 'none') : displayFor(o.output, process.stdout);
  const r = await watchUnit(api, body.work_unit_id, { timeoutMs: o.timeout * 1000, display, out });
  if (o.output === 'json') printJson({ ...body, outcome: r.outcome, unit: r.unit ?? null });
  return exitFor(r.outcome);
}

function waitOptions(c: Command): Command {
  return c
    .option('--wait', 'follow the work unit to its end, step by step; exit 0 if it SUCCEEDED, 3 if it FAILED, 4 on --timeout')
    .option('--timeout <seconds>', 'how long --wait waits', seconds, 600);
}

/** Runs a command body and sets the exit code it returns. */
const act =
  <A extends unknown[]>(fn: (...a: A) => Promise<number | void>) =>
  async (...a: A): Promise<void> => {
    const code = await fn(...a);
    if (typeof code === 'number' && code !== 0) process.exitCode = code;
  };

export function addUserCommands(program: Command): void {
  // ---- servers -------------------------------------------------------------------------------
  const server = program.command('server').description('servers (VMs): create, list, show, act on, delete, read the console');

  waitOptions(
    apiOptions(
      server
        .command('create')
        .description('boot a server; with --wait, follow its build step by step to its end')
        .argument('<name>', 'its name (letters, digits, . _ -)')
        .option('--vcpus <n>', 'virtual CPUs', positiveInt('vcpus', 1024), 1)
        .option('--ram-mb <n>', 'memory in MB', positiveInt('ram-mb'), 512)
        .option('--disk-gb <n>', 'disk in GB', (v) => (v === '0' ? 0 : positiveInt('disk-gb')(v)), 10)
        .option('--image <name-or-id>', "one of the project's images (quark image list)")
        .option('--zone <zone>', 'only computes in this zone')
        .option('--label <label>', 'only computes carrying this label (repeat for more)', collect)
        .option('--bandwidth-mbps <n>', 'network bandwidth to reserve', (v) => (v === '0' ? 0 : positiveInt('bandwidth-mbps')(v)))
        .option('--group <id>', 'join this server group (quark group list)')
        .option('--user-data <file>', 'cloud-init user data (a file; sent base64)')
        .option('--port <host:guest>', "forward TCP port host (on the compute's 127.0.0.1) to guest (repeat for more)", collect)
        .option('--idempotency-key <key>', 'the same key again returns the first answer instead of booting twice'),
    ),
  ).action(
    act(async (name: string, o: ApiOpts & { vcpus: number; ramMb: number; diskGb: number; image?: string; zone?: string; label?: string[]; bandwidthMbps?: number; group?: string; userData?: string; port?: string[]; idempotencyKey?: string; wait?: boolean; timeout: number }) => {
      const api = urlOf(o);
      const ports = (o.port ?? []).map((p) => {
        const m = /^([0-9]{1,5}):([0-9]{1,5})$/.exec(p);
        if (!m) throw new UsageError(`--port must be HOST:GUEST (two port numbers), got ${JSON.stringify(p)}`);
        return { host_port: Number(m[1]), guest_port: Number(m[2]) };
      });
      if (o.userData !== undefined && !existsSync(o.userData)) throw new UsageError(`--user-data ${o.userData}: no such file`);
      const body = {
        name,
        flavor: { vcpus: o.vcpus, ram_mb: o.ramMb, disk_gb: o.diskGb },
        ...(o.image ? { image: o.image } : {}),
        ...(o.zone ? { zone: o.zone } : {}),
        ...(o.label ? { labels: o.label } : {}),
        ...(o.bandwidthMbps !== undefined ? { bandwidth_mbps: o.bandwidthMbps } : {}),
        ...(o.group ? { group: o.group } : {}),
        ...(o.userData !== undefined ? { user_data: readFileSync(o.userData).toString('base64') } : {}),
        ...(ports.length > 0 ? { ports } : {}),
      };
      const accepted = await json<Required<Accepted>>(api, 'POST', '/v1/servers', body, o.idempotencyKey ? { 'idempotency-key': o.idempotencyKey } : {});
      return afterAccepted(api, accepted, accepted.server_id, o, `booting ${name}`);
    }),
  );

  apiOptions(
    server
      .command('list')
      .description('servers you can see (an admin: all), every page')
      .addOption(new Option('--status <status>', 'only servers in this status (DELETED: deleted ones still kept, see quark orc --deleted-retention)').choices(VM_STATUSES))
      .option('--compute <id>', 'only servers on this compute')
      .option('--name-prefix <prefix>', 'only servers whose name starts with this'),
  ).action(
    act(async (o: ApiOpts & { status?: string; compute?: string; namePrefix?: string }) => {
      const rows = await listAll<ServerView>(urlOf(o), '/v1/servers', { status: o.status, compute_id: o.compute, name_prefix: o.namePrefix });
      if (o.output === 'json') printJson(rows);
      else print(rows.length === 0 ? 'no servers' : serversTable(rows));
    }),
  );

  apiOptions(server.command('show').description('one server').argument('<server>', 'its id or name')).action(
    act(async (ref: string, o: ApiOpts) => {
      const api = urlOf(o);
      const s = await json<ServerView>(api, 'GET', `/v1/servers/${await resolveServer(api, ref)}`);
      if (o.output === 'json') printJson(s);
      else print(serverDetail(s));
    }),
  );

  waitOptions(apiOptions(server.command('delete').description('delete a server (its VM, disk and record)').argument('<server>', 'its id or name'))).action(
    act(async (ref: string, o: ApiOpts & { wait?: boolean; timeout: number }) => {
      const api = urlOf(o);
      const id = await resolveServer(api, ref);
      const accepted = await json<Accepted>(api, 'DELETE', `/v1/servers/${id}`);
      return afterAccepted(api, accepted, id, o, `deleting ${ref}`);
    }),
  );

  for (const action of ACTIONS) {
    waitOptions(apiOptions(server.command(action).description(`${action} a server`).argument('<server>', 'its id or name'))).action(
      act(async (ref: string, o: ApiOpts & { wait?: boolean; timeout: number }) => {
        const api = urlOf(o);
        const id = await resolveServer(api, ref);
        const accepted = await json<Accepted>(api, 'POST', `/v1/servers/${id}/actions`, { action });
        return afterAccepted(api, accepted, id, o, `${action} ${ref}`);
      }),
    );
  }

  apiOptions(
    server
      .command('console')
      .description("the last lines of a real guest's serial console")
      .argument('<server>', 'its id or name')
      .option('--lines <n>', 'how many of the last lines', positiveInt('lines', 10_000), 100),
    false,
  ).action(
    act(async (ref: string, o: ApiOpts & { lines: number }) => {
      const api = urlOf(o);
      const res = await raw(api, 'GET', `/v1/servers/${await resolveServer(api, ref)}/console?lines=${o.lines}`);
      process.stdout.write(await res.text());
    }),
  );

  // ---- work units ------------------------------------------------------------------------------
  const unit = program.command('unit').description('work units: what the cluster is doing for a request');
  apiOptions(unit.command('show').description('one work unit and its steps').argument('<id>', 'the work unit id')).action(
    act(async (id: string, o: ApiOpts) => {
      const u = await json<UnitView>(urlOf(o), 'GET', `/v1/work-units/${id}`);
      if (o.output === 'json') printJson(u);
      else print(unitDetail(u));
    }),
  );
  apiOptions(
    unit
      .command('watch')
      .description('follow a work unit live to its end (exit 0 SUCCEEDED, 3 FAILED, 4 timeout); -o json prints each change as a JSON line')
      .argument('<id>', 'the work unit id')
      .option('--timeout <seconds>', 'how long to wait', seconds, 600),
  ).action(
    act(async (id: string, o: ApiOpts & { timeout: number }) => {
      const r = await watchUnit(urlOf(o), id, { timeoutMs: o.timeout * 1000, display: o.output === 'json' ? 'ndjson' : displayFor('table', process.stdout), out: process.stdout });
      return exitFor(r.outcome);
    }),
  );
  apiOptions(
    unit
      .command('list')
      .description('work units, newest first')
      .addOption(new Option('--state <state>', 'only units in this state').choices(WORK_UNIT_STATES))
      .addOption(new Option('--kind <kind>', 'only units of this kind').choices(WORK_KINDS))
      .option('--server <id>', "only this server's units")
      .option('--limit <n>', 'at most this many', positiveInt('limit', 1000), 50),
  ).action(
    act(async (o: ApiOpts & { state?: string; kind?: string; server?: string; limit: number }) => {
      const q = new URLSearchParams({ limit: String(o.limit), ...(o.state ? { state: o.state } : {}), ...(o.kind ? { kind: o.kind } : {}), ...(o.server ? { server_id: o.server } : {}) });
      const rows = await json<UnitView[]>(urlOf(o), 'GET', `/v1/work-units?${q}`);
      if (o.output === 'json') printJson(rows);
      else print(rows.length === 0 ? 'no work units' : unitsTable(rows));
    }),
  );

  // ---- images ------------------------------------------------------------------------------------
  const image = program.command('image').description("disk images a server boots from (your project's)");
  apiOptions(
    image
      .command('upload')
      .description('upload a disk image into your project')
      .argument('<file>', 'the qcow2 or raw file')
      .option('--name <name>', 'its name (default: the file name without extension)')
      .addOption(new Option('--format <format>', 'qcow2 or raw (default: from the extension, .qcow2 or .raw/.img)').choices(['qcow2', 'raw'])),
  ).action(
    act(async (file: string, o: ApiOpts & { name?: string; format?: string }) => {
      if (!existsSync(file)) throw new UsageError(`${file}: no such file`);
      const ext = extname(file).toLowerCase();
      const format = o.format ?? (ext === '.qcow2' ? 'qcow2' : ext === '.raw' || ext === '.img' ? 'raw' : undefined);
      if (!format) throw new UsageError(`cannot tell the format of ${file} from its extension; give --format qcow2|raw`);
      const name = o.name ?? basename(file, extname(file));
      const img = await upload<ImageView>(urlOf(o), `/v1/images?${new URLSearchParams({ name, format })}`, file);
      if (o.output === 'json') printJson(img);
      else print(imagesTable([img]));
    }),
  );
  apiOptions(image.command('list').description('images you can see')).action(
    act(async (o: ApiOpts) => {
      const rows = await json<ImageView[]>(urlOf(o), 'GET', '/v1/images');
      if (o.output === 'json') printJson(rows);
      else print(rows.length === 0 ? 'no images' : imagesTable(rows));
    }),
  );
  apiOptions(image.command('delete').description('delete an image (refused while a server uses it)').argument('<image>', 'its id or name')).action(
    act(async (ref: string, o: ApiOpts) => {
      const api = urlOf(o);
      let id = ref;
      if (!UUID.test(ref)) {
        const hit = (await json<ImageView[]>(api, 'GET', '/v1/images')).filter((i) => i.name === ref);
        if (hit.length !== 1) throw new CliError(hit.length === 0 ? `no image named ${JSON.stringify(ref)}` : `${hit.length} images are named ${JSON.stringify(ref)}; name one by its id`);
        id = hit[0]!.id;
      }
      await raw(api, 'DELETE', `/v1/images/${id}`);
      if (o.output === 'json') printJson({ id, deleted: true });
      else print(`image ${id} deleted`);
    }),
  );
}

/** `compute list|cordon|uncordon|evacuate`, `orc list`, `shard list`: the operator's reads and calls (admin). */
export function addComputeCommands(compute: Command): void {
  apiOptions(compute.command('list').description('computes: alive, cordoned, capacity used, VMs and tasks (admin)')).action(
    act(async (o: ApiOpts) => {
      const rows = await json<ComputeView[]>(urlOf(o), 'GET', '/v1/computes');
      if (o.output === 'json') printJson(rows);
      else print(rows.length === 0 ? 'no computes' : computesTable(rows));
    }),
  );
  for (const verb of ['cordon', 'uncordon'] as const) {
    apiOptions(
      compute
        .command(verb)
        .description(verb === 'cordon' ? 'placement passes this compute over; its VMs keep running (admin)' : 'placement may use this compute again (admin)')
        .argument('<id>', 'the compute id'),
    ).action(
      act(async (id: string, o: ApiOpts) => {
        const api = urlOf(o);
        if (o.output === 'json') printJson(await json<ComputeView>(api, 'POST', `/v1/computes/${encodeURIComponent(id)}/${verb}`));
        else print(await cordon(api, id, verb === 'cordon'));
      }),
    );
  }
  apiOptions(
    compute
      .command('evacuate')
      .description('rebuild the LOST VMs of a compute that is down on other computes, same server ids (refused while it is alive; admin)')
      .argument('<id>', 'the compute id'),
  ).action(
    act(async (id: string, o: ApiOpts) => {
      const api = urlOf(o);
      if (o.output === 'json') printJson(await json<unknown>(api, 'POST', `/v1/computes/${encodeURIComponent(id)}/evacuate`));
      else print(await evacuate(api, id));
    }),
  );
}

export function addClusterReads(program: Command, orc: Command): void {
  apiOptions(orc.command('list').description('orcs and the shards each owns (admin)')).action(
    act(async (o: ApiOpts) => {
      const rows = await json<OrcView[]>(urlOf(o), 'GET', '/v1/orcs');
      if (o.output === 'json') printJson(rows);
      else print(rows.length === 0 ? 'no orcs' : orcsTable(rows));
    }),
  );
  const shard = program.command('shard').description("the cluster's shards");
  apiOptions(shard.command('list').description('each shard and the orc that owns it (admin)')).action(
    act(async (o: ApiOpts) => {
      const owners = await json<Record<string, string | null>>(urlOf(o), 'GET', '/v1/shards');
      if (o.output === 'json') printJson(owners);
      else print(shardsTable(owners));
    }),
  );
}
