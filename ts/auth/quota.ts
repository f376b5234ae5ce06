// Project quotas. A project's usage is one versioned znode (projects/<p>/usage), written only by
// the API's accept, in the accept's own transaction: the version check makes the quota hold across
// every API process. Each server holds a charge (charges/<server-id>). A release (the finish of a
// delete, or of a failed build) removes the charge and leaves a marker in projects/<p>/released/,
// whose name carries the amounts; it touches no counter, so it never conflicts with an accept or
// another release. The next accept folds the markers into the counter (removing them in its
// transaction), and every reader counts the markers not folded yet. The charge makes a release
// happen once: a server with none (released already, or older than quotas) releases nothing.
import type { Zk } from '../zk/client.js';
import type { Txn } from '../zk/txn.js';
import { applyOps, type Op, type Read } from '../lifecycle/ops.js';
import type { Paths } from '../zk/paths.js';
import type { Flavor } from '../common/model.js';
import { AuthPaths } from './layout.js';
import { isProjectId, type ProjectId } from './policy.js';

export const RESOURCES = ['instances', 'vcpus', 'ram_mb', 'disk_gb'] as const;
export type Resource = (typeof RESOURCES)[number];

/** What a project holds, or what one server counts. */
export type Usage = Record<Resource, number>;
/** Limits; a resource left out (or null) is unlimited. */
export type Quota = Partial<Record<Resource, number | null>>;

export interface Charge extends Usage {
  project: ProjectId;
}

export const NO_USAGE: Usage = { instances: 0, vcpus: 0, ram_mb: 0, disk_gb: 0 };

export const chargeOf = (f: Flavor): Usage => ({ instances: 1, vcpus: f.vcpus, ram_mb: f.ram_mb, disk_gb: f.disk_gb });

export function addUsage(a: Usage, b: Usage, sign: 1 | -1 = 1): Usage {
  const out = { ...NO_USAGE };
  // A release never drives usage below zero, whatever an older record held.
  for (const r of RESOURCES) out[r] = Math.max(0, a[r] + sign * b[r]);
  return out;
}

export interface Excess {
  resource: Resource;
  limit: number;
  in_use: number;
  requested: number;
}

/** Which limits `request` on top of `usage` would pass; empty when it fits. */
export function excess(quota: Quota | null | undefined, usage: Usage, request: Usage): Excess[] {
  const out: Excess[] = [];
  for (const r of RESOURCES) {
    const limit = quota?.[r];
    if (typeof limit === 'number' && usage[r] + request[r] > limit) out.push({ resource: r, limit, in_use: usage[r], requested: request[r] });
  }
  return out;
}

/** A usage value read back from ZooKeeper; anything malformed counts as nothing held. */
export function usageOf(v: unknown): Usage {
  const u = v as Partial<Usage> | undefined;
  const out = { ...NO_USAGE };
  for (const r of RESOURCES) {
    const n = u?.[r];
    if (typeof n === 'number' && Number.isFinite(n) && n > 0) out[r] = n;
  }
  return out;
}

export function quotaOf(v: unknown): Quota {
  const q = v as Quota | undefined;
  const out: Quota = {};
  for (const r of RESOURCES) {
    const n = q?.[r];
    if (typeof n === 'number' && Number.isInteger(n) && n >= 0) out[r] = n;
  }
  return out;
}

function chargeFrom(v: unknown): Charge | null {
  const c = v as Partial<Charge> | undefined;
  if (!c || typeof c !== 'object' || !isProjectId(c.project)) return null;
  return { project: c.project, ...usageOf(c) };
}

/** A release marker's name: the server and what it gave back, so a list of names is a sum. */
export const markerName = (serverId: string, c: Usage): string => `${serverId}_${c.vcpus}_${c.ram_mb}_${c.disk_gb}`;

const MARKER = /^([0-9a-f-]{36})_([0-9]{1,10})_([0-9]{1,12})_([0-9]{1,12})$/;

export function parseMarker(name: string): Usage | null {
  const m = MARKER.exec(name);
  return m ? { instances: 1, vcpus: Number(m[2]), ram_mb: Number(m[3]), disk_gb: Number(m[4]) } : null;
}

/** What markers not folded yet give back, summed. */
export function releasedSum(names: readonly string[]): Usage {
  let sum = { ...NO_USAGE };
  for (const n of names) {
    const u = parseMarker(n);
    if (u) sum = { instances: sum.instances + 1, vcpus: sum.vcpus + u.vcpus, ram_mb: sum.ram_mb + u.ram_mb, disk_gb: sum.disk_gb + u.disk_gb };
  }
  return sum;
}

/** A project's usage as the counter holds it less the releases not folded in yet. */
export const effectiveUsage = (counter: Usage, markers: readonly string[]): Usage => addUsage(counter, releasedSum(markers), -1);

/**
 * The ops that release one server's usage, given its charge as read (null: it holds none): remove
 * the charge (at the version read) and leave the marker. No counter is written.
 */
export function releaseOps(ap: AuthPaths, serverId: string, charge: Read<unknown> | null): Op[] {
  if (!charge) return [];
  const c = chargeFrom(charge.value);
  const ops: Op[] = [{ type: 'remove', path: ap.charge(serverId), version: charge.version }];
  if (c) ops.push({ type: 'create', path: `${ap.released(c.project)}/${markerName(serverId, c)}` });
  return ops;
}

/**
 * The ops that release server `serverId`'s quota usage (none if it holds no charge), for a
 * transaction built as a list of ops: one read. Appended where a delete's finish or a failed
 * build's finish is committed.
 */
export async function usageRelease(zk: Zk, paths: Paths | AuthPaths, serverId: string): Promise<Op[]> {
  const ap = paths instanceof AuthPaths ? paths : new AuthPaths(paths);
  const charge = await zk.get(ap.charge(serverId));
  return releaseOps(ap, serverId, charge ? { value: charge.value, version: charge.stat.version } : null);
}

/**
 * Adds to `txn` what releases server `serverId`'s quota usage (nothing if it holds no charge), and
 * returns the txn: the same as usageRelease, for a transaction built on a Txn. One read.
 */
export async function releaseServerUsage(zk: Zk, paths: Paths | AuthPaths, txn: Txn, serverId: string): Promise<Txn> {
  return applyOps(txn, await usageRelease(zk, paths, serverId));
}
