#!/usr/bin/env node
/**
 * Builds the `shoal` command: src/cli/main.ts and everything it imports, its npm dependencies
 * included, into one ES module, dist/shoal.js, with esbuild.
 *
 * Why one file and not tsc's tree of modules: a peer loads ~300 modules at start (fastify and its
 * plugins, pino, prom-client, typebox, ws, ...), and each costs a file read, a module record and a
 * wrapper kept for the life of the process. In one file, code a peer never calls is only text.
 * Measured on a lone idle peer (x86-64, Node 20, three runs each): 96 MB RSS from the tree of
 * modules, 79 MB from the bundle (anonymous memory 49 MB to 32 MB), and "up" printed after about
 * 600 ms instead of 300 ms; on a Raspberry Pi's SD card the start gains more.
 *
 * Not minified, so stack traces keep their names; dist/shoal.js.map maps them back to the sources
 * when Node runs with --enable-source-maps. better-sqlite3 stays outside (a native addon, loaded
 * from node_modules as before). The dependencies stay in package.json's "dependencies": npm
 * installs them for this build, and the dashboard serves preact, htm and uPlot straight from them.
 */

import { readFileSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

// `node scripts/build.mjs [ENTRY OUTFILE]`: the bench bundles its stack-floor program the same way
// (bench/floor.ts). Both or neither: an entry alone would overwrite dist/shoal.js with it.
const args = process.argv.slice(2);
if (args.length !== 0 && args.length !== 2) {
  console.error('usage: node scripts/build.mjs [ENTRY OUTFILE]');
  process.exit(2);
}
const [entry = 'src/cli/main.ts', outfile = 'dist/shoal.js'] = args;

await build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['better-sqlite3'],
  // Bundled CommonJS packages call require() for Node's own modules; an ES module has none.
  banner: {
    js: "import { createRequire as __shoalRequire } from 'node:module';\nconst require = __shoalRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  sourcesContent: false,
  // The licence comments of bundled packages go to dist/shoal.js.LEGAL.txt: one of them holds a
  // non-ASCII letter (see below why that matters).
  legalComments: 'external',
  logLevel: 'warning',
});

// V8 keeps a script's whole source in the heap for the life of the process, one byte a character
// when every character is Latin-1 and two bytes otherwise: a single non-ASCII character in a
// comment esbuild keeps doubles it (3.7 MB to 7.4 MB of an idle peer's heap). esbuild escapes
// non-ASCII in strings and names by itself (charset ascii); this catches the comments.
const out = readFileSync(outfile);
const at = out.findIndex((byte) => byte > 0x7f);
if (at >= 0) {
  const line = out.subarray(0, at).toString('latin1').split('\n').length;
  console.error(`${outfile}:${line}: a non-ASCII character; write it in ASCII in the source it comes from`);
  rmSync(outfile); // Not left for a later run of it.
  process.exit(1);
}
