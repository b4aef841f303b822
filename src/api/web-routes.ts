/**
 * The dashboard: the files under web/ at /, and the few browser libraries it imports (preact,
 * htm, uPlot) at /vendor/, straight from their npm packages. No bundler: the page is ES modules
 * with an import map. None of it needs a key; the page asks for one and talks to the API with it.
 */

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import { PACKAGE_ROOT } from '../paths.ts';

const require = createRequire(import.meta.url);
/** A file beside the main file of a package (their exports maps hide the package root). */
const besideMain = (specifier: string, file: string): string =>
  join(dirname(require.resolve(specifier)), file);

export const WEB_ROOT = join(PACKAGE_ROOT, 'web');

/** The vendored browser modules, by the name the page imports them under. */
const VENDOR: Record<string, { file: string; type: string }> = {
  'preact.mjs': { file: besideMain('preact', 'preact.module.js'), type: 'text/javascript' },
  'preact-hooks.mjs': { file: besideMain('preact/hooks', 'hooks.module.js'), type: 'text/javascript' },
  'htm.mjs': { file: besideMain('htm', 'htm.module.js'), type: 'text/javascript' },
  'uplot.mjs': { file: besideMain('uplot', 'uPlot.esm.js'), type: 'text/javascript' },
  'uplot.css': { file: besideMain('uplot', 'uPlot.min.css'), type: 'text/css' },
};

export const webRoutes: FastifyPluginAsync = async (app) => {
  await app.register(fastifyStatic, {
    root: WEB_ROOT,
    prefix: '/',
    index: ['index.html'],
    cacheControl: true,
    maxAge: 0,
  });
  app.get<{ Params: { name: string } }>(
    '/vendor/:name',
    { schema: { hide: true } },
    async (request, reply) => {
      const entry = Object.hasOwn(VENDOR, request.params.name) ? VENDOR[request.params.name] : undefined;
      if (!entry) return reply.callNotFound();
      return reply
        .header('cache-control', 'public, max-age=86400')
        .type(entry.type)
        .sendFile(entry.file.slice(dirname(entry.file).length + 1), dirname(entry.file));
    },
  );
};
