// Accepting a boot: the unit, the server, the inbox entry, the Idempotency-Key, the server's charge
// and the project's raised usage go in one transaction, whose check on the usage's version makes
// the quota hold across every API process. Boots of one project are committed in groups (whatever
// queued while the previous transaction was in flight), so one counter does not make them wait in
// single file. A transaction whose outcome a dropped connection hid is committed again, unchanged:
// its creates fail with NODE_EXISTS if it had landed, so the caller is never told "retry" while
// the unit may exist.
import { isTransientZkError, isZkError, ZkError } from '../zk/errors.js';
import type { Stat, Zk } from '../zk/client.js';
import type { Txn } from '../zk/txn.js';
import type { Logger } from '../common/log.js';
import type { ProjectId } from '../auth/policy.js';
import type { AuthPaths } from '../auth/layout.js';
import { addUsage, effectiveUsage, excess, parseMarker, quotaOf, releasedSum, usageOf, type Charge, type Usage } from '../auth/quota.js';
import { ApiError } from './errors.js';
import { expired, type IdempotencyRecord } from './idempotency.js';

export interface Boot<A> {
  project: ProjectId;
  serverId: string;
  /** What the server counts against the project. */
  charge: Usage;
  /** The unit's znode: its existence is how an ambiguous commit is settled. Created by `write`'s first op. */
  unitPath: string;
  /** Adds the unit, server and inbox entry to the transaction (the unit first). */
  write: (txn: Txn) => void;
  answer: A;
  idempotency?: { path: string; fingerprint: string };
  /** The refusal of this boot alone when one of its own ops failed (an image removed meanwhile); null: not its op. */
  refusal?: (e: ZkError) => ApiError | null;
}

interface Pending<A> {
  boot: Boot<A>;
  resolve: (a: A) => void;
  reject: (e: unknown) => void;
  /** An expired key found at `idempotency.path`, replaced in the same transaction. */
  staleKeyVersion?: number;
}

export interface AdmissionOptions {
  /** Most boots in one transaction. */
  maxGroup?: number;
  /** Most release markers folded into the counter by one transaction. */
  maxFold?: number;
  /** Attempts after the usage moved under us before answering 503. */
  maxConflicts?: number;
  /** How long an ambiguous commit may wait for the connection to settle it. */
  settleMs?: number;
  log?: Logger;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Admission<A> {
  private readonly queues = new Map<ProjectId, Pending<A>[]>();
  /** The usage as this process last committed it: saves a read while nobody else writes it. */
  private readonly known = new Map<ProjectId, { usage: Usage; version: number }>();
  private readonly ready = new Set<string>();

  constructor(
    private readonly zk: Zk,
    private readonly ap: AuthPaths,
    private readonly o: AdmissionOptions = {},
  ) {}

  admit(boot: Boot<A>): Promise<A> {
    return new Promise<A>((resolve, reject) => {
      const q = this.queues.get(boot.project);
      const p: Pending<A> = { boot, resolve, reject };
      if (q) {
        q.push(p);
        return;
      }
      this.queues.set(boot.project, [p]);
      void this.drain(boot.project);
    });
  }

  private async drain(project: ProjectId): Promise<void> {
    const q = this.queues.get(project)!;
    try {
      while (q.length > 0) {
        // Two boots with one key never share a transaction: the later waits and then replays.
        const group: Pending<A>[] = [];
        const keys = new Set<string>();
        for (let i = 0; i < q.length && group.length < (this.o.maxGroup ?? 32); ) {
          const k = q[i]!.boot.idempotency?.path;
          if (k && keys.has(k)) {
            i++;
            continue;
          }
          if (k) keys.add(k);
          group.push(...q.splice(i, 1));
        }
        await this.commitGroup(project, group).catch((err) => {
          for (const p of group) p.reject(err);
        });
      }
    } finally {
      this.queues.delete(project);
    }
  }

  private async ensureDirs(project: ProjectId): Promise<void> {
    const dir = this.ap.project(project);
    if (this.ready.has(dir)) return;
    await this.zk.mkdirp(this.ap.released(project));
    await this.zk.mkdirp(this.ap.charges);
    this.ready.add(dir);
  }

  /** Answers each boot whose key was already used; returns the ones still to commit. */
  private async replayKeys(group: Pending<A>[]): Promise<Pending<A>[]> {
    const now = Date.now();
    const out: Pending<A>[] = [];
    await Promise.all(
      group.map(async (p) => {
        const idem = p.boot.idempotency;
        if (!idem) return out.push(p);
        const prior = await this.zk.get<IdempotencyRecord<A>>(idem.path);
        if (!prior?.value || expired(prior.value, now)) {
          p.staleKeyVersion = prior ? prior.stat.version : undefined;
          return out.push(p);
        }
        if (prior.value.fingerprint !== idem.fingerprint) {
          p.reject(new ApiError('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used with a different request body'));
        } else {
          p.resolve(prior.value.answer);
        }
      }),
    );
    // Keep arrival order: the quota is granted first come, first served.
    return group.filter((p) => out.includes(p));
  }

  /** The counter as stored (releases not folded yet are listed apart). */
  private async readUsage(project: ProjectId): Promise<{ usage: Usage; version: number | null }> {
    const v = await this.zk.get(this.ap.usage(project));
    return v ? { usage: usageOf(v.value), version: v.stat.version } : { usage: usageOf(undefined), version: null };
  }

  private async commitGroup(project: ProjectId, incoming: Pending<A>[]): Promise<void> {
    await this.ensureDirs(project);
    let group = await this.replayKeys(incoming);
    const requeue: Pending<A>[] = [];
    for (let conflicts = 0; group.length > 0; ) {
      const [quotaNode, markerNames] = await Promise.all([this.zk.get(this.ap.quota(project)), this.zk.children(this.ap.released(project))]);
      const quota = quotaOf(quotaNode?.value);
      const markers = (markerNames ?? []).filter((n) => parseMarker(n) !== null);
      const cached = this.known.get(project);
      let base: { usage: Usage; version: number | null } = cached ?? (await this.readUsage(project));
      let { admitted, refused } = grant(quota, effectiveUsage(base.usage, markers), group);
      if (refused.length > 0 && cached) {
        // Never refuse on a remembered figure: another API may have folded releases since.
        base = await this.readUsage(project);
        ({ admitted, refused } = grant(quota, effectiveUsage(base.usage, markers), group));
      }
      for (const [p, ex, inUse] of refused) {
        p.reject(
          new ApiError('QUOTA_EXCEEDED', `project ${project} quota: ${ex.map((e) => `${e.resource} ${e.in_use}+${e.requested} > ${e.limit}`).join(', ')}`, {
            exceeded: ex,
            usage: inUse,
            quota,
          }),
        );
      }
      if (admitted.length === 0) break;
      // The counter takes this group's charges and gives back the releases folded in now.
      const folded = markers.slice(0, this.o.maxFold ?? 256);
      const after = admitted.reduce((u, p) => addUsage(u, p.boot.charge), addUsage(base.usage, releasedSum(folded), -1));
      const txn = this.zk.txn();
      for (const p of admitted) {
        p.boot.write(txn);
        const idem = p.boot.idempotency;
        if (idem) {
          if (p.staleKeyVersion !== undefined) txn.remove(idem.path, p.staleKeyVersion);
          const rec: IdempotencyRecord<A> = { fingerprint: idem.fingerprint, answer: p.boot.answer, project, created_at: Date.now() };
          txn.create(idem.path, rec);
        }
        txn.create(this.ap.charge(p.boot.serverId), { project, ...p.boot.charge } satisfies Charge);
      }
      const usagePath = this.ap.usage(project);
      // Before the markers' removal: another API folding them too shows up here first, as a version conflict.
      if (base.version === null) txn.create(usagePath, after);
      else txn.set(usagePath, after, base.version);
      for (const m of folded) txn.remove(`${this.ap.released(project)}/${m}`);

      const usageOp = txn.size - 1 - folded.length;
      const outcome = await commitSettled(this.zk, txn, admitted[0]!.boot.unitPath, { settleMs: this.o.settleMs, log: this.o.log });
      if (outcome.kind === 'applied') {
        const r = outcome.results?.[usageOp];
        const version = r?.stat ? r.stat.version : r?.path ? 0 : undefined;
        if (version !== undefined) this.known.set(project, { usage: after, version });
        else this.known.delete(project);
        for (const p of admitted) p.resolve(p.boot.answer);
        break;
      }
      if (outcome.kind === 'unknown') {
        this.known.delete(project);
        for (const p of admitted) p.reject(outcomeUnknown(p.boot.answer));
        break;
      }
      // Not applied. Which op failed says what to do.
      const e = outcome.error;
      this.known.delete(project);
      const keyOwner = admitted.find((p) => p.boot.idempotency?.path === e.path);
      if (keyOwner && (isZkError(e, 'NODE_EXISTS') || isZkError(e, 'BAD_VERSION') || isZkError(e, 'NO_NODE'))) {
        // Another request with the same key (from another API) got there first: replay it after this group.
        requeue.push(keyOwner);
        group = group.filter((p) => p !== keyOwner && admitted.includes(p));
        continue;
      }
      const folding = e.path?.startsWith(`${this.ap.released(project)}/`) && isZkError(e, 'NO_NODE');
      if ((e.path === usagePath && (isZkError(e, 'BAD_VERSION') || isZkError(e, 'NODE_EXISTS'))) || folding) {
        if (++conflicts > (this.o.maxConflicts ?? 16)) {
          for (const p of admitted) p.reject(new ApiError('UNAVAILABLE', `project ${project}'s usage is contended; retry`));
          break;
        }
        group = group.filter((p) => admitted.includes(p));
        if (conflicts > 2) await sleep(Math.random() * 5 * conflicts);
        continue;
      }
      // One boot's own op failed: refuse that boot and commit the others without it.
      const own = admitted.map((p) => [p, p.boot.refusal?.(e) ?? null] as const).find(([, r]) => r !== null);
      if (own) {
        own[0].reject(own[1]);
        group = group.filter((p) => p !== own[0] && admitted.includes(p));
        continue;
      }
      for (const p of admitted) p.reject(e);
      break;
    }
    if (requeue.length > 0) await this.commitGroup(project, requeue);
  }
}

export type CommitOutcome =
  | { kind: 'applied'; results?: Array<{ stat?: Stat; path?: string }> }
  | { kind: 'failed'; error: ZkError }
  | { kind: 'unknown' };

/**
 * Commits; after a dropped connection, commits the same transaction again once connected. If the
 * first had landed, the second fails on its first create (`firstCreate`, a node with a new id):
 * applied. `unknown` only when the connection did not come back within `settleMs`, or the session
 * died around the commit. `results` (one per op) when this call's own commit landed.
 */
export async function commitSettled(zk: Zk, txn: Txn, firstCreate: string, o: { settleMs?: number; log?: Logger } = {}): Promise<CommitOutcome> {
  const deadline = Date.now() + (o.settleMs ?? 10_000);
  let retried = false;
  for (;;) {
    try {
      return { kind: 'applied', results: await txn.commit() };
    } catch (e) {
      if (retried && isZkError(e, 'NODE_EXISTS') && e.path === firstCreate) return { kind: 'applied' };
      if (isTransientZkError(e)) {
        retried = true;
        o.log?.warn('commit outcome hidden by a dropped connection; settling it', { node: firstCreate });
        try {
          await zk.waitConnected(Math.max(0, deadline - Date.now()));
        } catch {
          return { kind: 'unknown' };
        }
        continue;
      }
      // The session died around the commit: whether it was sent before cannot be told here.
      if (isZkError(e, 'SESSION_EXPIRED')) return { kind: 'unknown' };
      if (e instanceof ZkError) return { kind: 'failed', error: e };
      throw e;
    }
  }
}

type Refusal<A> = [Pending<A>, ReturnType<typeof excess>, Usage];

/** First come, first served: each boot is judged on the usage the ones before it left. */
function grant<A>(quota: ReturnType<typeof quotaOf>, usage: Usage, group: Pending<A>[]): { admitted: Pending<A>[]; refused: Refusal<A>[] } {
  const admitted: Pending<A>[] = [];
  const refused: Refusal<A>[] = [];
  let running = usage;
  for (const p of group) {
    const ex = excess(quota, running, p.boot.charge);
    if (ex.length > 0) refused.push([p, ex, running]);
    else {
      admitted.push(p);
      running = addUsage(running, p.boot.charge);
    }
  }
  return { admitted, refused };
}

export function outcomeUnknown(answer: unknown): ApiError {
  return new ApiError(
    'OUTCOME_UNKNOWN',
    'the coordination service dropped the connection while this boot was being committed and did not come back in time; ' +
      'GET the work unit named here: 404 means nothing was created. A retry with the same Idempotency-Key is safe.',
    answer as Record<string, unknown>,
  );
}
