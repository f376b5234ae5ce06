// A guest's serial console, as QEMU appends it to a file: the last lines (Nova's
// os-getConsoleOutput), and waiting for a line that says the guest got somewhere.
import { open, stat } from 'node:fs/promises';

/** The markers the tiny image's init and ACPI handler print (scripts/build-tiny-image.sh). */
export const MARKERS = {
  up: 'QUARK_GUEST_UP',
  userDataBegin: 'QUARK_USER_DATA_BEGIN',
  userDataEnd: 'QUARK_USER_DATA_END',
  powerButton: 'QUARK_ACPI_POWER_BUTTON',
} as const;

/** The last `n` lines of `text` (a final newline does not count as an empty last line). */
export function lastLines(text: string, n: number): string {
  if (n <= 0) return '';
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.slice(-n).join('\n') + (lines.length > 0 ? '\n' : '');
}

/** How often `marker` occurs in `text` (each boot prints its marker once). */
export function countMarker(text: string, marker: string): number {
  let count = 0;
  for (let i = text.indexOf(marker); i >= 0; i = text.indexOf(marker, i + marker.length)) count++;
  return count;
}

/**
 * The last `n` lines of the file, reading backwards from its end only as far as needed
 * (a console log grows for the guest's whole life). A missing file is an empty console.
 */
export async function tailFile(path: string, n: number, chunkBytes = 64 * 1024): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
  try {
    const { size } = await fh.stat();
    let pos = size;
    let buf = Buffer.alloc(0);
    // n lines need n + 1 newlines before them, or the start of the file.
    while (pos > 0) {
      const len = Math.min(chunkBytes, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      await fh.read(chunk, 0, len, pos);
      buf = Buffer.concat([chunk, buf]);
      let newlines = 0;
      for (const b of buf) if (b === 0x0a) newlines++;
      if (newlines > n) break;
    }
    // Serial output may carry \r and stray bytes; text is what the API promises.
    return lastLines(buf.toString('utf8').replace(/\r/g, ''), n);
  } finally {
    await fh.close();
  }
}

/** The whole console (for tests and the probe: logs of tiny guests stay small). */
export async function readConsole(path: string): Promise<string> {
  return tailFile(path, Number.MAX_SAFE_INTEGER);
}

export async function consoleSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
}

/**
 * Resolves once the console holds `marker` at least `count` times; polls every `intervalMs`.
 * Rejects after `timeoutMs` with what the console said last.
 */
export async function waitForMarker(
  path: string,
  marker: string,
  o: { count?: number; timeoutMs: number; intervalMs?: number; signal?: AbortSignal },
): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  const want = o.count ?? 1;
  for (;;) {
    const text = await readConsole(path);
    if (countMarker(text, marker) >= want) return;
    if (o.signal?.aborted) throw new Error(`stopped waiting for ${marker}`);
    if (Date.now() > deadline) {
      throw new Error(`no ${marker} (x${want}) on the console within ${o.timeoutMs} ms; it ends with:\n${lastLines(text, 15)}`);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 50));
  }
}
