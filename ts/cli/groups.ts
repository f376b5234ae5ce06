// `quark group create|list|show|delete`: server groups, through the API with the caller's token.
import { call, CliError, table } from '../auth/cli.js';
import { isGroupPolicy, GROUP_POLICIES } from '../common/vocabulary.js';

interface GroupView {
  id: string;
  project: string;
  name: string;
  policy: string;
  created_at: string;
  members: Array<{ server_id: string; compute_id: string | null }>;
}

const show = (g: GroupView): string =>
  `id       ${g.id}\nproject  ${g.project}\nname     ${g.name}\npolicy   ${g.policy}\ncreated  ${g.created_at}\nmembers  ${g.members.length}\n` +
  (g.members.length > 0 ? `\n${table([['SERVER', 'COMPUTE'], ...g.members.map((m) => [m.server_id, m.compute_id ?? '(not placed)'])])}` : '');

export async function groupCreate(api: string, name: string, policy: string): Promise<string> {
  if (!isGroupPolicy(policy)) throw new CliError(`--policy must be one of ${GROUP_POLICIES.join(', ')}`);
  return show(await call<GroupView>(api, 'POST', '/v1/server-groups', { name, policy }));
}

export async function groupList(api: string): Promise<string> {
  const rows = await call<GroupView[]>(api, 'GET', '/v1/server-groups');
  return table([['ID', 'PROJECT', 'NAME', 'POLICY', 'MEMBERS', 'CREATED'], ...rows.map((g) => [g.id, g.project, g.name, g.policy, String(g.members.length), g.created_at])]);
}

export async function groupShow(api: string, id: string): Promise<string> {
  return show(await call<GroupView>(api, 'GET', `/v1/server-groups/${encodeURIComponent(id)}`));
}

export async function groupDelete(api: string, id: string): Promise<string> {
  await call<undefined>(api, 'DELETE', `/v1/server-groups/${encodeURIComponent(id)}`);
  return `server group ${id} deleted\n`;
}
