// The live display of `--wait` and `unit watch`: on a terminal, a block redrawn in place as the
// unit's event stream reports each step (and every 200 ms for the running step's clock); into a
// pipe or file, one line per event, nothing redrawn.
import { followUnit, type Outcome } from './client.js';
import { outcomeLine, progressLines, renderProgress, type UnitView } from './format.js';

export type Display = 'live' | 'lines' | 'none' | 'ndjson';

export interface WatchResult {
  outcome: Outcome;
  unit: UnitView | undefined;
}

/** Terminal control: up one line per drawn line, then clear to the end of the screen. */
const redrawFrom = (lines: number): string => (lines > 0 ? `\x1b[${lines}F\x1b[J` : '');

export async function watchUnit(api: string, id: string, o: { timeoutMs: number; display: Display; out: NodeJS.WriteStream }): Promise<WatchResult> {
  let drawn = 0;
  let last: UnitView | undefined;
  let skew = 0; // server clock minus this machine's
  const draw = (): void => {
    if (!last) return;
    const lines = renderProgress(last, Date.now() + skew);
    o.out.write(redrawFrom(drawn) + lines.join('\n') + '\n');
    drawn = lines.length;
  };
  const ticker = o.display === 'live' ? setInterval(draw, 200) : undefined;
  try {
    const r = await followUnit(api, id, {
      timeoutMs: o.timeoutMs,
      onUnit: (u, serverNow) => {
        skew = serverNow - Date.now();
        if (o.display === 'lines') for (const line of progressLines(last, u)) o.out.write(`${line}\n`);
        if (o.display === 'ndjson') o.out.write(`${JSON.stringify(u)}\n`);
        last = u;
        if (o.display === 'live') draw();
      },
    });
    if (o.display === 'live') draw();
    if (o.display === 'live' || o.display === 'lines') o.out.write(`${outcomeLine(r.outcome, r.unit ?? last, o.timeoutMs)}\n`);
    return r;
  } finally {
    if (ticker) clearInterval(ticker);
  }
}

/** A live display on a terminal, lines elsewhere; none when the caller asked for JSON on stdout. */
export function displayFor(output: 'table' | 'json', out: NodeJS.WriteStream): Display {
  if (output === 'json') return 'none';
  return out.isTTY ? 'live' : 'lines';
}
