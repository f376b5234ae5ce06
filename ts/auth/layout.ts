// Where security state lives in ZooKeeper, under the same root as the rest (/quark by default):
//   tokens/<id>                   a token: project, role, sha256 of the secret (never the secret)
//   projects/<p>/quota            limits set by an admin
//   projects/<p>/usage            what the project holds, versioned: written by accepts only
//   projects/<p>/released/<m>     a release not yet folded into usage (the name carries the amounts)
//   charges/<server-id>           what one server counts against its project until released
//   audit/e-<ms>-<seq>            one mutating call (sequential; the oldest pruned past a bound)
import type { Paths } from '../zk/paths.js';
import type { ProjectId } from './policy.js';

export class AuthPaths {
  readonly root: string;
  constructor(paths: Paths | { root: string }) {
    this.root = paths.root;
  }
  get tokens(): string { return `${this.root}/tokens`; }
  token(id: string): string { return `${this.tokens}/${id}`; }
  get projects(): string { return `${this.root}/projects`; }
  project(p: ProjectId): string { return `${this.projects}/${p}`; }
  quota(p: ProjectId): string { return `${this.project(p)}/quota`; }
  usage(p: ProjectId): string { return `${this.project(p)}/usage`; }
  released(p: ProjectId): string { return `${this.project(p)}/released`; }
  get charges(): string { return `${this.root}/charges`; }
  charge(serverId: string): string { return `${this.charges}/${serverId}`; }
  get audit(): string { return `${this.root}/audit`; }
  /** Sequential node prefix: the time in the name lets `since` be answered from the names alone. */
  auditPrefix(at: number): string { return `${this.audit}/e-${at}-`; }

  /** The persistent directories the API creates at start. */
  get skeleton(): string[] {
    return [this.tokens, this.projects, this.charges, this.audit];
  }
}
