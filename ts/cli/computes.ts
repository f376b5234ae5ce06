// `quark compute evacuate|cordon|uncordon <id>`: the operator's calls on a compute, through the API
// with the caller's token (admin only).
import { call } from '../auth/cli.js';

interface ComputeRow {
  id: string;
  alive?: boolean;
  cordoned: boolean;
}

interface Evacuation {
  compute_id: string;
  evacuated: Array<{ server_id: string; work_unit_id: string }>;
  skipped: Array<{ server_id: string; reason: string }>;
}

const path = (id: string, verb: string): string => `/v1/computes/${encodeURIComponent(id)}/${verb}`;

export async function cordon(api: string, id: string, on: boolean): Promise<string> {
  const c = await call<ComputeRow>(api, 'POST', path(id, on ? 'cordon' : 'uncordon'));
  return `compute ${c.id} is ${c.cordoned ? 'cordoned: no new VM is placed on it; its VMs keep running' : 'not cordoned: placement may use it'}\n`;
}

export async function evacuate(api: string, id: string): Promise<string> {
  const e = await call<Evacuation>(api, 'POST', path(id, 'evacuate'));
  const lines = [`compute ${e.compute_id}: ${e.evacuated.length} VM(s) being rebuilt elsewhere, ${e.skipped.length} skipped`];
  for (const v of e.evacuated) lines.push(`  rebuilding ${v.server_id}  work unit ${v.work_unit_id}`);
  for (const v of e.skipped) lines.push(`  skipped    ${v.server_id}  ${v.reason}`);
  return `${lines.join('\n')}\n`;
}
