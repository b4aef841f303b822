/**
 * The HTTP server of a peer: the client API under /api/v1, /metrics, and the peer-link WebSocket
 * at /mesh/v1, all on one port. Every error answers `{"error": {"code", "message"}}` with a code
 * from errors.ts.
 */

import websocket from '@fastify/websocket';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyPluginAsync,
} from 'fastify';
import type { WebSocket } from 'ws';
import { ShoalError } from '../errors.ts';
import type { EventBus } from '../events.ts';
import type { ServerMetadata } from '../identity.ts';
import type { Logger } from '../log.ts';
import type { PeerView } from '../mesh/peer-table.ts';
import type { Metrics } from '../metrics.ts';
import type { NodeService } from '../replication/node-service.ts';
import { type ApiKeys, bearerKey } from './auth.ts';
import { automationRoutes } from './automation-routes.ts';
import { ClientSlots, eventRoutes } from './events-route.ts';
import { nodeRoutes } from './node-routes.ts';
import { Health, MeshGraph, Peers, Server } from './schemas.ts';
import { streamRoute } from './stream-route.ts';
import { webRoutes } from './web-routes.ts';

export interface ApiDeps {
  log: Logger;
  metrics: Metrics;
  events: EventBus;
  keys: ApiKeys;
  server: () => ServerMetadata;
  peers: () => PeerView[];
  startedAt: number;
  nodes: NodeService;
  /** The mesh as a graph of servers and links (for the dashboard). */
  graph: () => unknown;
  /** Fires a trigger from outside (a press, an incoming webhook). */
  fire: (id: string, payload: unknown) => void;
  /** Hands an inbound /mesh/v1 WebSocket to the mesh. */
  acceptLink: (ws: WebSocket, remoteAddress: string) => void;
}

export interface ApiOptions {
  maxFrameBytes: number;
  maxBodyBytes: number;
  maxEventClients: number;
  eventClientBufferBytes: number;
}

export async function buildApi(deps: ApiDeps, options: ApiOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    disableRequestLogging: true,
    bodyLimit: options.maxBodyBytes,
    forceCloseConnections: true,
  });

  app.setErrorHandler((err: FastifyError | ShoalError, request, reply) => {
    const shoal = toShoalError(err);
    if (shoal.status >= 500) request.log.error({ err }, 'request failed');
    return reply.status(shoal.status).send(shoal.toJSON());
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send(new ShoalError('SHOAL_NOT_FOUND', `no route ${request.method} ${request.url}`).toJSON()),
  );

  await app.register(websocket, {
    options: { maxPayload: options.maxFrameBytes, perMessageDeflate: false },
  });
  app.get('/mesh/v1', { websocket: true }, (socket, request) => {
    deps.acceptLink(socket, stripMappedV4(request.socket.remoteAddress ?? ''));
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await deps.metrics.text();
    return reply.type(deps.metrics.contentType).send(text);
  });

  const apiV1: FastifyPluginAsync = async (api) => {
    api.addHook('onRequest', async (request) => {
      // Health is public; the stream authenticates itself (browsers cannot send the header).
      if (request.routeOptions.url === '/api/v1/health' || request.routeOptions.url === '/api/v1/stream')
        return;
      const key = bearerKey(request.headers.authorization);
      if (!key || !deps.keys.scopeOf(key)) {
        throw new ShoalError('SHOAL_UNAUTHORIZED', 'send a valid API key as "Authorization: Bearer KEY"');
      }
    });

    api.get('/health', { schema: { response: { 200: Health } } }, async () => {
      const server = deps.server();
      return {
        status: 'ok' as const,
        id: server.id,
        name: server.name,
        version: server.version,
        uptimeS: Math.round((Date.now() - deps.startedAt) / 100) / 10,
      };
    });
    api.get('/server', { schema: { response: { 200: Server } } }, async () => deps.server());
    api.get('/peers', { schema: { response: { 200: Peers } } }, async () => ({ peers: deps.peers() }));
    api.get('/mesh', { schema: { response: { 200: MeshGraph } } }, async () => deps.graph());
    const slots = new ClientSlots(options.maxEventClients);
    await api.register(eventRoutes, {
      events: deps.events,
      metrics: deps.metrics,
      slots,
      clientBufferBytes: options.eventClientBufferBytes,
    });
    await api.register(nodeRoutes, { nodes: deps.nodes });
    await api.register(automationRoutes, { nodes: deps.nodes, fire: deps.fire });
    await api.register(streamRoute, {
      nodes: deps.nodes,
      events: deps.events,
      metrics: deps.metrics,
      keys: deps.keys,
      hello: () => {
        const { id, name, version } = deps.server();
        return { id, name, version };
      },
      clientBufferBytes: options.eventClientBufferBytes,
      slots,
    });
  };
  await app.register(apiV1, { prefix: '/api/v1' });
  await app.register(webRoutes);
  return app;
}

function toShoalError(err: FastifyError | ShoalError): ShoalError {
  if (err instanceof ShoalError) return err;
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new ShoalError('SHOAL_TOO_LARGE', err.message);
  if (err.validation)
    return new ShoalError('SHOAL_BAD_REQUEST', `${err.validationContext ?? 'request'} ${err.message}`);
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new ShoalError('SHOAL_BAD_REQUEST', err.message);
  }
  return new ShoalError('SHOAL_INTERNAL', 'internal error', { cause: err });
}

function stripMappedV4(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
