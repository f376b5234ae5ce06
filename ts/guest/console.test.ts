// Reading a guest's console file: the last N lines (from the end, in chunks), counting markers,
// and waiting for one. Plain files, no guest needed.
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countMarker, lastLines, tailFile, waitForMarker } from './console.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quark-console-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('lastLines', () => {
  it('keeps the last n lines, a final newline not counting as a line', () => {
    expect(lastLines('a\nb\nc\n', 2)).toBe('b\nc\n');
    expect(lastLines('a\nb\nc', 2)).toBe('b\nc\n');
    expect(lastLines('a\n', 5)).toBe('a\n');
    expect(lastLines('', 3)).toBe('');
    expect(lastLines('a\nb\n', 0)).toBe('');
  });
});

describe('countMarker', () => {
  it('counts each occurrence once', () => {
    expect(countMarker('QUARK_GUEST_UP x\nboot\nQUARK_GUEST_UP y\n', 'QUARK_GUEST_UP')).toBe(2);
    expect(countMarker('nothing', 'QUARK_GUEST_UP')).toBe(0);
  });
});

describe('tailFile', () => {
  it('is empty for a console that does not exist yet', async () => {
    expect(await tailFile(join(dir, 'missing.log'), 10)).toBe('');
  });

  it('reads backwards in chunks and returns what lastLines returns on the whole text', async () => {
    const path = join(dir, 'prop.log');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.stringMatching(/^[a-z \r]{0,40}$/), { maxLength: 60 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 1, max: 64 }),
        async (lines, finalNewline, n, chunk) => {
          const text = lines.join('\n') + (finalNewline && lines.length ? '\n' : '');
          await writeFile(path, text);
          expect(await tailFile(path, n, chunk)).toBe(lastLines(text.replace(/\r/g, ''), n));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('waitForMarker', () => {
  it('resolves once the marker has appeared the wanted number of times', async () => {
    const path = join(dir, 'boot.log');
    await writeFile(path, 'bios\n');
    const waiting = waitForMarker(path, 'QUARK_GUEST_UP', { count: 2, timeoutMs: 5000, intervalMs: 10 });
    await appendFile(path, 'QUARK_GUEST_UP 1\n');
    setTimeout(() => void appendFile(path, 'QUARK_GUEST_UP 2\n'), 100);
    await expect(waiting).resolves.toBeUndefined();
  });

  it('fails after the timeout with the end of the console', async () => {
    const path = join(dir, 'hung.log');
    await writeFile(path, 'Probing EDD\n');
    await expect(waitForMarker(path, 'QUARK_GUEST_UP', { timeoutMs: 100, intervalMs: 10 })).rejects.toThrow(/Probing EDD/);
  });
});
