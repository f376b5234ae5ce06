// Structured logs through pino: one JSON object per line on stderr, so stdout stays free for program
// output. Quark's call shape stays `log.info(msg, fields)`; the line keeps the keys operators and
// tools already read: `t` (ISO time), `level` (its name), `msg`, then the fields.
import { pino, type DestinationStream, type Logger as Pino } from 'pino';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: ReadonlySet<string> = new Set(['debug', 'info', 'warn', 'error']);

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  /** Whether a line of this level would be written (skip building costly fields otherwise). */
  enabled(level: Level): boolean;
}

/** An Error becomes its message and code: a line stays one short, greppable record. */
function plain(fields: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const err = fields?.err;
  return err instanceof Error ? { ...fields, err: err.message, code: (err as { code?: string }).code } : fields;
}

function wrap(p: Pino): Logger {
  const at =
    (lvl: Level) =>
    (msg: string, fields?: Record<string, unknown>): void => {
      if (!p.isLevelEnabled(lvl)) return;
      const f = plain(fields);
      if (f) p[lvl](f, msg);
      else p[lvl](msg);
    };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => wrap(p.child(fields)),
    enabled: (lvl) => p.isLevelEnabled(lvl),
  };
}

/** The level QUARK_LOG_LEVEL names, or info (an unknown name is info too, not a crash at start). */
export function envLevel(): Level {
  const v = process.env.QUARK_LOG_LEVEL;
  return v && LEVELS.has(v) ? (v as Level) : 'info';
}

/**
 * stderr, shared by every logger of the process: written off the event loop (lines that arrive
 * while a write is under way go out together), and flushed on exit, so a process that exits right
 * after a line (a fatal error) still shows it.
 */
let stderr: ReturnType<typeof pino.destination> | undefined;
function stderrDestination(): DestinationStream {
  if (!stderr) {
    const dest = pino.destination({ dest: 2, sync: false });
    process.on('exit', () => {
      try {
        dest.flushSync();
      } catch {
        // stderr is gone (a closed pipe): nothing left to tell
      }
    });
    stderr = dest;
  }
  return stderr;
}

export function createLogger(base: Record<string, unknown>, level: Level = envLevel(), sink?: (line: string) => void): Logger {
  const dest: DestinationStream = sink ? { write: (s: string) => sink(s.endsWith('\n') ? s.slice(0, -1) : s) } : stderrDestination();
  const p = pino(
    {
      level,
      base,
      messageKey: 'msg',
      timestamp: () => `,"t":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  return wrap(p);
}
