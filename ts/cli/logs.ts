// `quark up --logs`: every process's output merged into one stream, each line prefixed with the
// process's name and its JSON log record made readable (time, level, message, then the fields).
// Pure: the caller feeds lines as they come.

const COLORS = [36, 33, 35, 32, 34, 91, 96, 93, 95, 92];
const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
// Fields every record carries, shown in the prefix or not at all.
const HIDDEN = new Set(['t', 'time', 'level', 'msg', 'proc', 'pid', 'hostname', 'v']);

/** A stable colour per process name, so one process keeps its colour across restarts. */
export function colorOf(name: string): number {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length]!;
}

const fieldValue = (v: unknown): string => (typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v));

/**
 * One line as `--logs` shows it. A JSON record (Quark's own logger, or pino's numeric levels)
 * becomes `HH:MM:SS.mmm LEVEL message key=value …`; anything else is shown as it came.
 */
export function readableLogLine(name: string, line: string, o: { width?: number; color?: boolean } = {}): string {
  const prefix = name.padEnd(o.width ?? name.length);
  const tag = o.color ? `\x1b[${colorOf(name)}m${prefix}\x1b[0m` : prefix;
  let rec: Record<string, unknown> | undefined;
  if (line.startsWith('{')) {
    try {
      const parsed = JSON.parse(line) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) rec = parsed as Record<string, unknown>;
    } catch {
      /* not JSON after all */
    }
  }
  if (!rec) return `${tag} | ${line}`;
  const t = rec.t ?? rec.time;
  const when = typeof t === 'string' || typeof t === 'number' ? new Date(t) : undefined;
  const clock = when && !Number.isNaN(when.getTime()) ? when.toISOString().slice(11, 23) : '--:--:--.---';
  const lvl = typeof rec.level === 'number' ? (LEVEL_NAMES[rec.level] ?? String(rec.level)) : String(rec.level ?? 'info').toUpperCase();
  const level = o.color && (lvl === 'WARN' || lvl === 'ERROR' || lvl === 'FATAL') ? `\x1b[${lvl === 'WARN' ? 33 : 31}m${lvl.padEnd(5)}\x1b[0m` : lvl.padEnd(5);
  const fields = Object.entries(rec)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${k}=${fieldValue(v)}`)
    .join(' ');
  return `${tag} | ${clock} ${level} ${String(rec.msg ?? '')}${fields ? `  ${fields}` : ''}`;
}
