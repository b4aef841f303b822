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

import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/shoal.js',
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
  legalComments: 'eof',
  logLevel: 'warning',
});
