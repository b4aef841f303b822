/**
 * The HTTP server of a peer: the client API under /api/v1, /metrics, and the peer-link WebSocket
 * at /mesh/v1, all on one port. Every error answers `{"error": {"code", "message"}}` with a code
 * from errors.ts.
 */

import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { WebSocket } from 'ws';
import { ShoalError } from '../errors.ts';
import type { EventBus } from '../events.ts';
import type { ServerMetadata } from '../identity.ts';
import type { Logger } from '../log.ts';
import type { PeerView } from '../mesh/peer-table.ts';
import type { Metrics } from '../metrics.ts';
import { RateLimiter } from '../rate-limit.ts';
import type { NodeService } from '../replication/node-service.ts';
import type { RetiredServer } from '../store/store.ts';
import { VERSION } from '../version.ts';
import { type ApiKeys, bearerKey } from './auth.ts';
import { automationRoutes } from './automation-routes.ts';
import { ClientSlots, eventRoutes } from './events-route.ts';
import { keyRoutes } from './key-routes.ts';
import { nodeRoutes } from './node-routes.ts';
import {
  ErrorBody,
  Health,
  IdParams,
  MeshGraph,
  Peers,
  RetiredServers,
  Retirement,
  Server,
} from './schemas.ts';
import { streamRoute } from './stream-route.ts';
import { webRoutes } from './web-routes.ts';

export interface ApiDeps {
  log: Logger;
  metrics: Metrics;
  events: EventBus;
  keys: ApiKeys;
  server: () => ServerMetadata;
  peers: () => PeerView[];
  /** Retires a server that is gone for good (src/replication/retirement.ts). */
  retire: (id: string) => { retired: RetiredServer; removedNodes: number };
  retired: () => RetiredServer[];
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
  maxJsonDepth: number;
  streamAuthTimeoutMs: number;
  streamUnauthenticatedPerAddress: number;
  apiRatePerSecond: number;
  apiBurst: number;
  apiRateSources: number;
  maxConnections: number;
}

export async function buildApi(deps: ApiDeps, options: ApiOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    // Per-request lines would drown the log of a busy peer; errors are logged by the handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.maxBodyBytes,
    forceCloseConnections: true,
    // A field the route does not take is refused (400 naming it), not dropped in silence: a typo
    // like `{"nmae": ...}` would otherwise answer 200 and change nothing. Nor is a value of the
    // wrong type turned into the right one (`"name": 5` was stored as "5").
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    // A URL Fastify cannot even route (`/api/v1/nodes/%00%ff`) is answered like any other error.
    frameworkErrors: (err, _request, reply) => {
      (reply as FastifyReply).status(400).send(new ShoalError('SHOAL_BAD_REQUEST', err.message).toJSON());
    },
  });
  // Every open connection holds a file descriptor: past this many, new ones are closed at once
  // (peer links and event streams included), so a flood of idle connections cannot use up the
  // descriptors the server needs for anything else.
  app.server.maxConnections = options.maxConnections;
  // Bodies are JSON. An empty body is no body, whatever type it says it is (a DELETE from a
  // client that always sets one, a fetch() with body ''). A JSON body is parsed as before,
  // __proto__ keys refused, and a refused one says why (Fastify's message said "not valid JSON"
  // of either); a body of any other type, or of none, is refused saying what came. (Text is
  // taken only where a trigger's payload may be text: automation-routes.ts.)
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text === '') return done(null, undefined);
    void parseJson(request, text, (err, value) => {
      if (err) done(new ShoalError('SHOAL_BAD_REQUEST', jsonBodyProblem(text)), undefined);
      else done(null, value);
    });
  });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body, done) => {
    if ((body as Buffer).length === 0) done(null, undefined);
    else done(notJson(request), undefined);
  });

  app.setErrorHandler((err: FastifyError | ShoalError, request, reply) => {
    const shoal = toShoalError(err, request);
    if (shoal.status >= 500) request.log.error({ err }, 'request failed');
    return reply.status(shoal.status).send(shoal.toJSON());
  });
  // A client (by address) that floods the API is answered 429 before any other work: a token
  // bucket per address, the same as for beacons.
  const rates = new RateLimiter({
    ratePerSecond: options.apiRatePerSecond,
    burst: options.apiBurst,
    maxSources: options.apiRateSources,
  });
  app.addHook('onRequest', async (request, reply) => {
    if (rates.allow(request.ip, Date.now())) return;
    deps.metrics.requestsLimited.inc();
    reply.header('retry-after', '1');
    throw new ShoalError(
      'SHOAL_RATE_LIMITED',
      `more than ${options.apiRatePerSecond} requests a second from ${request.ip} (apiRatePerSecond); retry shortly`,
    );
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send(new ShoalError('SHOAL_NOT_FOUND', `no route ${request.method} ${request.url}`).toJSON()),
  );

  // Every answer that is not a success is the error body: say so in every route's schema.
  app.addHook('onRoute', (route) => {
    if (route.schema?.response && typeof route.schema.response === 'object') {
      route.schema.response = { ...(route.schema.response as object), '4xx': ErrorBody, '5xx': ErrorBody };
    }
  });

  // The OpenAPI document is made from the routes' own schemas, so it cannot drift from them.
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'shoal',
        version: VERSION,
        description:
          'The HTTP API of a shoal peer. Every route but /api/v1/health, /api/v1/openapi.json and /metrics needs `Authorization: Bearer KEY`; keys of scope `read` may only GET. Errors are `{"error": {"code", "message"}}`.',
      },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
      security: [{ apiKey: [] }],
    },
  });

  await app.register(websocket, {
    options: { maxPayload: options.maxFrameBytes, perMessageDeflate: false },
  });
  // @fastify/websocket hides WebSocket routes from the OpenAPI document; the client stream is part
  // of the API, so it is shown (the peer-link route stays hidden).
  app.addHook('onRoute', (route) => {
    if (route.url === '/api/v1/stream' && route.schema) route.schema.hide = false;
  });
  app.get(
    '/mesh/v1',
    {
      websocket: true,
      schema: { hide: true },
      onRequest: async (request) => {
        if (!isWebSocketUpgrade(request)) {
          throw new ShoalError('SHOAL_BAD_REQUEST', 'GET /mesh/v1 is the WebSocket between peers');
        }
      },
    },
    (socket, request) => {
      deps.acceptLink(socket, stripMappedV4(request.socket.remoteAddress ?? ''));
    },
  );

  app.get(
    '/metrics',
    { schema: { summary: 'Prometheus metrics (text format); no key needed', security: [] } },
    async (_request, reply) => {
      const text = await deps.metrics.text();
      return reply.type(deps.metrics.contentType).send(text);
    },
  );

  const apiV1: FastifyPluginAsync = async (api) => {
    api.addHook('onRequest', async (request) => {
      // Health and the API's description are public; the stream authenticates itself (browsers
      // cannot send the header).
      const url = request.routeOptions.url;
      if (url === '/api/v1/health' || url === '/api/v1/openapi.json') return;
      const key = bearerKey(request.headers.authorization);
      if (url === '/api/v1/stream') {
        // Answered in HTTP, before any upgrade: a plain GET, or a key in the header that is wrong.
        // Without a header, the first message authenticates.
        if (!isWebSocketUpgrade(request)) {
          throw new ShoalError(
            'SHOAL_BAD_REQUEST',
            'GET /api/v1/stream is a WebSocket: open it with "Upgrade: websocket" (see the README)',
          );
        }
        if (key === undefined || deps.keys.scopeOf(key)) return;
      }
      const scope = key === undefined ? undefined : deps.keys.scopeOf(key);
      if (!scope)
        throw new ShoalError('SHOAL_UNAUTHORIZED', 'send a valid API key as "Authorization: Bearer KEY"');
      if (
        scope !== 'admin' &&
        (request.method !== 'GET' || request.routeOptions.url?.startsWith('/api/v1/keys'))
      ) {
        throw new ShoalError(
          'SHOAL_FORBIDDEN',
          `this key may only read (${request.method} needs an admin key)`,
        );
      }
    });

    api.get(
      '/openapi.json',
      { schema: { summary: 'This OpenAPI document; no key needed', security: [] } },
      async () => app.swagger(),
    );
    api.get(
      '/health',
      { schema: { summary: 'Is this peer up? No key needed.', security: [], response: { 200: Health } } },
      async () => {
        const server = deps.server();
        return {
          status: 'ok' as const,
          id: server.id,
          name: server.name,
          version: server.version,
          uptimeS: Math.round((Date.now() - deps.startedAt) / 100) / 10,
        };
      },
    );
    api.get('/server', { schema: { response: { 200: Server } } }, async () => deps.server());
    api.get('/peers', { schema: { response: { 200: Peers } } }, async () => ({ peers: deps.peers() }));
    api.get(
      '/peers/retired',
      { schema: { summary: 'Servers retired from the mesh', response: { 200: RetiredServers } } },
      async () => ({ retired: deps.retired() }),
    );
    api.delete<{ Params: { id: string } }>(
      '/peers/:id',
      {
        schema: {
          summary:
            'Retires a server that is gone for good: every server deletes its nodes and refuses it from then on (409 while it is connected)',
          params: IdParams,
          response: { 200: Retirement },
        },
      },
      async (request) => deps.retire(request.params.id),
    );
    api.get('/mesh', { schema: { response: { 200: MeshGraph } } }, async () => deps.graph());
    const slots = new ClientSlots(options.maxEventClients);
    // Streams still to authenticate have slots of their own: they cannot crowd out real clients.
    const unauthenticated = new ClientSlots(options.maxEventClients);
    await api.register(eventRoutes, {
      events: deps.events,
      metrics: deps.metrics,
      slots,
      clientBufferBytes: options.eventClientBufferBytes,
    });
    await api.register(nodeRoutes, { nodes: deps.nodes });
    await api.register(keyRoutes, { keys: deps.keys });
    await api.register(automationRoutes, {
      nodes: deps.nodes,
      fire: deps.fire,
      maxJsonDepth: options.maxJsonDepth,
    });
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
      unauthenticated,
      authTimeoutMs: options.streamAuthTimeoutMs,
      unauthenticatedPerAddress: options.streamUnauthenticatedPerAddress,
    });
  };
  await app.register(apiV1, { prefix: '/api/v1' });
  await app.register(webRoutes);
  return app;
}

function toShoalError(err: FastifyError | ShoalError, request: FastifyRequest): ShoalError {
  if (err instanceof ShoalError) return err;
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new ShoalError('SHOAL_TOO_LARGE', err.message);
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return notJson(request);
  if (err.validation) {
    const context = err.validationContext ?? 'request';
    const [first] = err.validation;
    const extra =
      first?.keyword === 'additionalProperties'
        ? (first.params as { additionalProperty?: string }).additionalProperty
        : undefined;
    return new ShoalError(
      'SHOAL_BAD_REQUEST',
      // (The message names the part already: "body/name must be string".)
      extra === undefined ? err.message : `${context}: "${extra}" is not a field this route takes`,
    );
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new ShoalError('SHOAL_BAD_REQUEST', err.message);
  }
  return new ShoalError('SHOAL_INTERNAL', 'internal error', { cause: err });
}

/** A body that is not JSON, refused saying what type it came as. */
function notJson(request: FastifyRequest): ShoalError {
  const type = request.headers['content-type'];
  return new ShoalError(
    'SHOAL_BAD_REQUEST',
    `a body must be JSON, sent with Content-Type: application/json (this one was ${type ? `sent as ${type.slice(0, 100)}` : 'sent without a Content-Type'})`,
  );
}

/** Why a JSON body was refused: where JSON.parse stopped, or the key no body may hold. */
function jsonBodyProblem(text: string): string {
  try {
    JSON.parse(text);
  } catch (err) {
    return `the body is not valid JSON: ${(err as Error).message}`;
  }
  return 'the body holds a "__proto__" key, or a "constructor" with a "prototype": no body may';
}

/** True for a request to open a WebSocket (the two WebSocket routes answer anything else 400). */
function isWebSocketUpgrade(request: FastifyRequest): boolean {
  return request.headers.upgrade?.toLowerCase() === 'websocket';
}

function stripMappedV4(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
