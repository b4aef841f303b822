/**
 * Firing triggers from outside: POST /api/v1/nodes/:id/fire (a Button press, or any trigger by
 * hand) and POST /api/v1/hooks/:path (IncomingWebHook nodes with that meta.path; the JSON body,
 * if any, is the payload executors see as {{value}}, and a text/plain body is a string payload,
 * as many devices and services send one). Both need an API key like the rest of
 * /api/v1, and fire at the server that took the call; the executors they wake run wherever they
 * are placed.
 */

import type { FastifyPluginAsync } from 'fastify';
import Type from 'typebox';
import { ShoalError } from '../errors.ts';
import { deeperThan } from '../json-depth.ts';
import type { NodeService } from '../replication/node-service.ts';
import { TRIGGER_TYPES } from '../store/node-types.ts';
import { IdParams } from './schemas.ts';

export interface AutomationRouteOptions {
  nodes: NodeService;
  fire: (id: string, payload: unknown) => void;
  /** How deep a payload may nest (Config.maxJsonDepth): executors render and store it. */
  maxJsonDepth: number;
}

const Fired = Type.Object({ fired: Type.Array(Type.String()) });

export const automationRoutes: FastifyPluginAsync<AutomationRouteOptions> = async (
  app,
  { nodes, fire, maxJsonDepth },
) => {
  // Only for these routes (a plugin's parsers are its own): the rest of the API takes JSON alone.
  app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_request, body, done) => {
    done(null, body === '' ? undefined : body);
  });
  const payloadOf = (body: unknown): unknown => {
    if (deeperThan(body, maxJsonDepth)) {
      throw new ShoalError(
        'SHOAL_BAD_REQUEST',
        `body: nested deeper than ${maxJsonDepth} levels (maxJsonDepth)`,
      );
    }
    return body ?? null;
  };

  app.post<{ Params: { id: string }; Body: unknown }>(
    '/nodes/:id/fire',
    { schema: { params: IdParams, response: { 200: Fired } } },
    async (request) => {
      const node = nodes.get(request.params.id);
      if (!TRIGGER_TYPES.includes(node.type)) {
        throw new ShoalError('SHOAL_BAD_REQUEST', `node ${node.id} is a ${node.type}; only triggers fire`);
      }
      fire(node.id, payloadOf(request.body));
      return { fired: [node.id] };
    },
  );

  app.post<{ Params: { path: string }; Body: unknown }>(
    '/hooks/:path',
    {
      schema: {
        params: Type.Object({ path: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }),
        response: { 200: Fired },
      },
    },
    async (request) => {
      const hooks = nodes
        .list({ type: 'IncomingWebHook' })
        .filter((n) => n.meta.path === request.params.path);
      if (hooks.length === 0)
        throw new ShoalError('SHOAL_NOT_FOUND', `no IncomingWebHook with path "${request.params.path}"`);
      const payload = payloadOf(request.body);
      for (const hook of hooks) fire(hook.id, payload);
      return { fired: hooks.map((h) => h.id) };
    },
  );
};
