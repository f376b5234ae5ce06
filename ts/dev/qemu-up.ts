// `quark up --hypervisor qemu`: what the local cluster needs to boot real guests. Installs and
// starts libvirtd and virtlogd (scripts/ensure-qemu.sh), builds the tiny image, points the
// computes at qemu:///system, then registers the image as `tiny` and boots a demo guest whose
// console shows its init's marker and its user data's output.
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildTinyImage, repoRoot, type TinyImage } from './tiny-image.js';
import { authHeaders } from '../auth/local.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const DEMO_USER_DATA = `#!/bin/sh
echo "hello from $(hostname), a real guest booted by Quark"
echo "kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPU, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
`;

export interface QemuUp {
  image: TinyImage;
  /** Flags for `quark compute` number `i`. */
  computeArgs(i: number): string[];
  /** After the cluster is up: register the image, boot the demo guest, show its console. */
  demo(api: string): Promise<void>;
  /** What to print about the hypervisor. */
  describe: string;
}

export async function prepareQemu(o: { home: string; say: (line: string) => void }): Promise<QemuUp> {
  const { say } = o;
  say('real guests: installing and starting libvirtd and virtlogd (scripts/ensure-qemu.sh)…');
  try {
    const { stdout, stderr } = await run(join(repoRoot(), 'scripts', 'ensure-qemu.sh'), [], { maxBuffer: 16 * 1024 * 1024 });
    for (const line of `${stdout}${stderr}`.split('\n')) if (line.startsWith('[ensure-qemu]')) say(`  ${line}`);
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`scripts/ensure-qemu.sh failed: ${err.stderr?.trim() || err.message}`, { cause: e });
  }
  say('building the tiny guest image (cached under .quark/images/)…');
  const image = await buildTinyImage({ log: (line) => say(`  ${line}`) });
  say(`  ${image.qcow2}`);
  return {
    image,
    describe: 'libvirt qemu:///system, real guests',
    computeArgs: (i) => [
      '--libvirt-uri',
      'qemu:///system',
      '--state-dir',
      join(o.home, 'computes', `compute-${i}`),
      '--probe-image',
      image.qcow2,
      // One probe per machine, whichever compute runs it first.
      '--probe-cache',
      join(o.home, 'accel-probe.json'),
      '--shutdown-timeout-s',
      '20',
    ],
    demo: (api) => demo(api, image, say),
  };
}

/** Calls carry the default token (QUARK_TOKEN, which `quark up` sets, else .quark/token). */
async function json<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { ...init, headers: { ...authHeaders(), ...(init?.headers as Record<string, string> | undefined) } });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** The image named `tiny`, uploaded from the build if the API does not have it yet. */
export async function registerTiny(api: string, image: TinyImage): Promise<{ id: string; name: string }> {
  const listed = await json<Array<{ id: string; name: string }>>(`${api}/v1/images`);
  const known = listed.body.find((i) => i.name === 'tiny');
  if (known) return known;
  const size = (await stat(image.qcow2)).size;
  const res = await fetch(`${api}/v1/images?name=tiny&format=qcow2`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size), ...authHeaders() },
    body: createReadStream(image.qcow2) as unknown as RequestInit['body'],
    duplex: 'half',
  } as RequestInit);
  const body = (await res.json()) as { id: string; name: string };
  if (res.status !== 201) throw new Error(`uploading the tiny image: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function demo(api: string, image: TinyImage, say: (line: string) => void): Promise<void> {
  const tiny = await registerTiny(api, image);
  say(`image tiny: ${tiny.id}`);
  const created = await json<{ work_unit_id: string; server_id: string }>(`${api}/v1/servers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'hello-quark',
      flavor: { vcpus: 1, ram_mb: 128, disk_gb: 1 },
      image: 'tiny',
      user_data: Buffer.from(DEMO_USER_DATA).toString('base64'),
    }),
  });
  if (created.status !== 202) {
    say(`demo boot was refused: ${JSON.stringify(created.body)}`);
    return;
  }
  const { server_id, work_unit_id } = created.body;
  say(`booting demo guest hello-quark: server ${server_id}, work unit ${work_unit_id}`);
  const t0 = Date.now();
  for (;;) {
    const wu = await json<{ state: string; compute_id: string | null; steps_completed: Array<{ name: string; time_to_completion_ms: number }>; error?: { code: string; message: string } }>(
      `${api}/v1/work-units/${work_unit_id}`,
    );
    if (wu.body.state === 'SUCCEEDED' || wu.body.state === 'FAILED' || Date.now() - t0 > 180_000) {
      const steps = wu.body.steps_completed.map((s) => `${s.name} ${s.time_to_completion_ms} ms`).join(', ');
      say(`demo work unit ${wu.body.state} on ${wu.body.compute_id ?? '-'}: ${steps}${wu.body.error ? ` — ${wu.body.error.code}: ${wu.body.error.message}` : ''}`);
      if (wu.body.state !== 'SUCCEEDED') return;
      break;
    }
    await sleep(200);
  }
  const consoleUrl = `${api}/v1/servers/${server_id}/console?lines=20`;
  for (;;) {
    const res = await fetch(consoleUrl, { headers: authHeaders() });
    const text = await res.text();
    if (res.ok && text.includes('QUARK_USER_DATA_END')) {
      say(`the guest ran its user data ${((Date.now() - t0) / 1000).toFixed(1)} s after the request; its console:`);
      for (const line of text.trimEnd().split('\n')) say(`  | ${line}`);
      break;
    }
    if (Date.now() - t0 > 180_000) {
      say(`the guest's console did not show its user data within 3 minutes; last lines:\n${text}`);
      break;
    }
    await sleep(250);
  }
  say(`read its console:   curl -s -H "authorization: Bearer $(cat .quark/token)" '${consoleUrl}'`);
  say(`stop it (ACPI):     curl -s -XPOST ${api}/v1/servers/${server_id}/actions -H "authorization: Bearer $(cat .quark/token)" -H 'content-type: application/json' -d '{"action":"stop"}'`);
  say(`the guests keep running after Ctrl-C; scripts/ensure-qemu.sh --stop stops the daemons it started`);
}
