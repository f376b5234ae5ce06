// `quark logs [-f]`: the logs of the cluster `quark up` started here (.quark/logs/*.log), merged
// by time and made readable as `up --logs` shows them; -f goes on printing lines as they come.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CliError } from '../auth/cli.js';
import { quarkHome } from './local.js';
import { mergeLogs, readableLogLine } from './logs.js';

export async function showLogs(o: { lines: number; follow: boolean; process?: string[] }): Promise<void> {
  const dir = join(quarkHome(), 'logs');
  if (!existsSync(dir)) throw new CliError(`no logs here (${dir} does not exist): quark up writes them`);
  const wanted = (name: string): boolean => !o.process || o.process.includes(name);
  const files = () =>
    readdirSync(dir)
      .filter((f) => f.endsWith('.log') && wanted(basename(f, '.log')))
      .sort();
  const offsets = new Map<string, number>();
  const partial = new Map<string, string>();
  const read = (f: string): string[] => {
    const path = join(dir, f);
    const size = statSync(path).size;
    let from = offsets.get(f) ?? 0;
    if (size < from) from = 0; // truncated (a new up): read it again
    if (size === from) return [];
    const text = (partial.get(f) ?? '') + readFileSync(path).subarray(from, size).toString('utf8');
    offsets.set(f, size);
    const lines = text.split('\n');
    partial.set(f, lines.pop() ?? '');
    return lines;
  };
  const names = files().map((f) => basename(f, '.log'));
  const width = Math.max(3, ...names.map((n) => n.length));
  const color = process.stdout.isTTY === true;
  const print = (name: string, line: string): void => void process.stdout.write(`${readableLogLine(name, line, { width, color })}\n`);
  const merged = mergeLogs(files().map((f) => ({ name: basename(f, '.log'), lines: read(f) })));
  for (const { name, line } of merged.slice(-o.lines)) print(name, line);
  if (!o.follow) return;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const batch = mergeLogs(files().map((f) => ({ name: basename(f, '.log'), lines: read(f) })));
    for (const { name, line } of batch) print(name, line);
  }
}
