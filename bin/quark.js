#!/usr/bin/env node
// The `quark` command: runs the compiled CLI (npm run build:ts, or npm run up, builds it).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/ts/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('quark: not built yet; run `npm run build` (or `npm run up`, which builds what is missing)\n');
  process.exit(2);
}
await import(entry.href);
