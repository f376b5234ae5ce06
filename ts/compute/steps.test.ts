// The steps' libvirt effects on the real test driver: each is idempotent (a unit resumed after a
// crash re-runs its step and finds the work done), and fails with a clear code when it cannot be.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Hypervisor } from '../native/libvirt.js';
import type { ServerId } from '../common/ids.js';
import { domainName, ensureDefined, ensureRunning, ensureStopped, ensureUndefined, runStepEffect, type StepContext } from './steps.js';

const c = { vcpus: 1, ram_mb: 256, disk_gb: 1, bandwidth_mbps: 0 };
let hv: Hypervisor;
const made: ServerId[] = [];
const vm = (): ServerId => {
  const id = randomUUID() as ServerId;
  made.push(id);
  return id;
};
const state = async (id: ServerId) => (await hv.list()).find((d) => d.name === domainName(id))?.state ?? null;

beforeAll(async () => {
  hv = await Hypervisor.open();
});
afterAll(async () => {
  for (const id of made) await ensureUndefined(hv, id);
  await hv.close();
});

describe('step effects', () => {
  it('define and start, each twice: one domain, running, nothing else changed', async () => {
    const id = vm();
    await ensureDefined(hv, id, c);
    await ensureDefined(hv, id, c);
    expect(await state(id)).toBe('shutoff');
    await ensureRunning(hv, id);
    await ensureRunning(hv, id); // already running: done
    expect(await state(id)).toBe('running');
    await ensureDefined(hv, id, c); // a resumed define on a running domain leaves it running
    expect(await state(id)).toBe('running');
    expect((await hv.list()).filter((d) => d.name === domainName(id))).toHaveLength(1);
    expect((await hv.info(domainName(id))).uuid).toBe(id);
  });

  it('starting a domain that is not defined fails with DOMAIN_MISSING', async () => {
    await expect(ensureRunning(hv, vm())).rejects.toMatchObject({ code: 'DOMAIN_MISSING' });
  });

  it('stop and undefine, each twice, end with no domain', async () => {
    const id = vm();
    await ensureDefined(hv, id, c);
    await ensureRunning(hv, id);
    await ensureStopped(hv, id, 1000);
    await ensureStopped(hv, id, 1000);
    expect(await state(id)).toBe('shutoff');
    await ensureUndefined(hv, id);
    await ensureUndefined(hv, id);
    expect(await state(id)).toBeNull();
  });
});

// A compute killed after a build's define and started again: with the test driver the domain died
// with the process, and reconcile does not define it again (the VM is not in managing/ until the
// build commits), so the resumed build's start step finds no domain.
describe('a resumed build whose domain libvirt lost', () => {
  const ctx = (id: ServerId): StepContext => ({ hv, vm: id, consumes: c, admit: () => {}, shutdownTimeoutMs: 1000, owner: 'compute-x', libvirtRetryMs: 0 });

  it('the start step defines the domain again from the unit\'s record and starts it, once', async () => {
    const id = vm();
    await runStepEffect('define', ctx(id));
    await ensureUndefined(hv, id); // what a compute restart does to the test driver's domains
    expect(await state(id)).toBeNull();
    await runStepEffect('start', ctx(id));
    expect(await state(id)).toBe('running');
    const info = await hv.info(domainName(id));
    expect(info.uuid).toBe(id);
    expect(info.vcpus).toBe(c.vcpus);
    expect(info.owner).toBe('compute-x');
    await runStepEffect('start', ctx(id)); // resumed again: already running, nothing changes
    expect((await hv.list()).filter((d) => d.name === domainName(id))).toHaveLength(1);
  });
});
