#!/usr/bin/env node
// Bundles the visualizer (ts/ui) into dist/ui: ui.js (ESM entry), hashed chunks (the layout engine
// is one, loaded only by pages that draw a chart), ui.css, source maps. Everything a page needs is
// in that folder; quark-api serves it under /ui/assets/.
//   node scripts/build-ui.mjs [--watch]
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'ui');
const watch = process.argv.includes('--watch');

await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });

const options = {
  absWorkingDir: root,
  entryPoints: [
    { in: 'ts/ui/main.ts', out: 'ui' },
    { in: 'ts/ui/ui.css', out: 'ui' },
  ],
  outdir,
  entryNames: '[name]',
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  // Source maps hold paths relative to dist/ui, never this machine's absolute paths.
  sourceRoot: '',
  legalComments: 'linked',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
  metafile: true,
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  console.log('[build-ui] watching ts/ui for changes');
} else {
  const result = await esbuild.build(options);
  const outputs = Object.entries(result.metafile.outputs).filter(([f]) => !f.endsWith('.map'));
  const kb = outputs.reduce((n, [, o]) => n + o.bytes, 0) / 1024;
  console.log(`[build-ui] ${outputs.length} files, ${kb.toFixed(0)} KiB in dist/ui`);
}
