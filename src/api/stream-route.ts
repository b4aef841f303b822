/**
 * GET /api/v1/stream: a WebSocket for client apps. It carries every event, like the SSE stream
 * (or those of the types named in `?types=node,peer`, or none with `?types=none`), and takes
 * writes. All messages are JSON objects with a type in `t`.
 *
 *   client -> server  {t:"auth", key}                      first, unless an Authorization header was sent
 *                     {t:"set", rid, id, value}             set a data point's value
 *                     {t:"create", rid, node:{type, name, parent?, owner?, meta?, value?}}
 *                     {t:"update", rid, id, name?, meta?}
 *                     {t:"delete", rid, id}
 *   server -> client  {t:"hello", id, name, version}        once authenticated
 *                     {t:"event", event}                    every node and peer change
 *                     {t:"result", rid, ok, node?, error?}  the answer to each write, in any order
 *                     {t:"error", error}                    a message that could not be understood
 *
 * Writes answer once the owner has committed them, exactly as the HTTP API does; many may be in
 * flight at once. A client that does not read fast enough is closed (code 1013) rather than
 * buffered without bound.
 */

import type { FastifyPluginAsync } from 'fastify';
import Type from 'typebox';
import Compile from 'typebox/compile';
import type { WebSocket } from 'ws';
import { ShoalError } from '../errors.ts';
import { type EventBus, eventTypes } from '../events.ts';
import type { Metrics } from '../metrics.ts';
import type { NodeService } from '../replication/node-service.ts';
import { type ApiKeys, bearerKey, type Scope } from './auth.ts';
import { corkPerTurn } from './cork.ts';
import { ClientSlots, typesQuery } from './events-route.ts';

export interface StreamOptions {
  nodes: NodeService;
  events: EventBus;
  metrics: Metrics;
  keys: ApiKeys;
  hello: () => { id: string; name: string; version: string };
  clientBufferBytes: number;
  /** Slots of authenticated clients (shared with SSE), and of streams still to authenticate. */
  slots: ClientSlots;
  unauthenticated: ClientSlots;
  /** How long a stream may take to send its auth message (Config.streamAuthTimeoutMs). */
  authTimeoutMs: number;
  /** Streams still to authenticate from one address at once (Config.streamUnauthenticatedPerAddress). */
  unauthenticatedPerAddress: number;
}

/** How long a refused stream is given to answer the close before its socket is dropped. */
const CLOSE_GRACE_MS = 1000;

const Rid = Type.Union([Type.String({ maxLength: 128 }), Type.Number()]);
const VARIANTS = [
  Type.Object({ t: Type.Literal('auth'), key: Type.String() }),
  Type.Object(
    { t: Type.Literal('set'), rid: Rid, id: Type.String(), value: Type.Unknown() },
    { required: ['t', 'rid', 'id', 'value'] },
  ),
  Type.Object({
    t: Type.Literal('create'),
    rid: Rid,
    node: Type.Object({
      type: Type.String(),
      name: Type.String({ minLength: 1, maxLength: 256 }),
      parent: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      owner: Type.Optional(Type.String()),
      meta: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
      value: Type.Optional(Type.Unknown()),
    }),
  }),
  Type.Object({
    t: Type.Literal('update'),
    rid: Rid,
    id: Type.String(),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    meta: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  }),
  Type.Object({ t: Type.Literal('delete'), rid: Rid, id: Type.String() }),
] as const;
const ClientMessage = Type.Union([...VARIANTS]);
type ClientMessage = Type.Static<typeof ClientMessage>;
const checkMessage = Compile(ClientMessage);
/** Each type's own check, to say what is wrong with a message of that type. */
const CHECKS = new Map(VARIANTS.map((v) => [v.properties.t.const as string, Compile(v)]));

/** What is wrong with a message that is not a stream message, naming the field. */
function problemOf(parsed: unknown): string {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return 'not a JSON object (a text frame holding {"t": …})';
  }
  const t = (parsed as { t?: unknown }).t;
  const check = typeof t === 'string' ? CHECKS.get(t) : undefined;
  if (!check) return `t: ${JSON.stringify(t) ?? 'missing'} is not one of ${[...CHECKS.keys()].join(', ')}`;
  const [first] = check.Errors(parsed);
  return `${first?.instancePath.replace(/^\//, '').replaceAll('/', '.') || t}: ${first?.message ?? 'is invalid'}`;
}
/** The slot of a stream that was refused one: nothing to give back. */
const NO_SLOT = new ClientSlots(0);

export const streamRoute: FastifyPluginAsync<StreamOptions> = async (app, options) => {
  /** Streams still to authenticate, per address: one address cannot take every such slot. */
  const waiting = new Map<string, number>();
  app.get<{ Querystring: { types?: string } }>(
    '/stream',
    {
      websocket: true,
      schema: {
        summary:
          'WebSocket: every event (or those of ?types=), and writes (set, create, update, delete); see the README for the messages',
        querystring: typesQuery(true),
      },
      // Answered in HTTP, before the upgrade.
      preHandler: async (request) => {
        eventTypes(request.query.types, true);
      },
    },
    (socket: WebSocket, request) => {
      // Checked in preHandler: cannot throw here.
      const types = eventTypes(request.query.types, true);
      // A key in the header (a wrong one was answered 401 before the upgrade: server.ts) takes a
      // client's slot at once; a stream to authenticate by message takes one of its own first.
      const headerKey = bearerKey(request.headers.authorization);
      const headerScope = headerKey === undefined ? undefined : options.keys.scopeOf(headerKey);
      const address = request.ip;
      const fromHere = waiting.get(address) ?? 0;
      if (
        !headerScope &&
        (fromHere >= options.unauthenticatedPerAddress || !options.unauthenticated.take())
      ) {
        socket.close(1013, 'too many clients');
        return;
      }
      if (!headerScope) waiting.set(address, fromHere + 1);
      let waitingHere = !headerScope;
      let slot: ClientSlots = headerScope ? NO_SLOT : options.unauthenticated;
      /** Gives the slot back (once): at once when the stream is refused, not after its close. */
      const releaseSlot = (): void => {
        slot.release();
        slot = NO_SLOT;
        if (!waitingHere) return;
        waitingHere = false;
        const left = (waiting.get(address) ?? 1) - 1;
        if (left > 0) waiting.set(address, left);
        else waiting.delete(address);
      };
      /** Closes with `code`, and drops the socket if the client does not answer the close. */
      let refused = false;
      const refuse = (code: number, reason: string): void => {
        if (refused) return;
        refused = true;
        releaseSlot();
        socket.close(code, reason);
        setTimeout(() => socket.terminate(), CLOSE_GRACE_MS).unref();
      };
      let authed = false;
      let scope: Scope | undefined;
      let unsubscribe: (() => void) | undefined;
      // The upgraded request's TCP socket is the WebSocket's.
      const cork = corkPerTurn(request.raw.socket);
      const sendText = (text: string): void => {
        if (cork() && socket.bufferedAmount > options.clientBufferBytes) {
          refuse(1013, 'too slow');
          return;
        }
        socket.send(text);
      };
      const send = (message: unknown): void => sendText(JSON.stringify(message));
      const begin = (granted: Scope): void => {
        releaseSlot();
        if (!options.slots.take()) {
          refuse(1013, 'too many clients');
          return;
        }
        slot = options.slots;
        authed = true;
        scope = granted;
        options.metrics.eventClients.inc();
        send({ t: 'hello', ...options.hello() });
        if (types?.size === 0) return;
        unsubscribe = options.events.subscribe((event) => {
          if (types && !types.has(event.type)) return;
          sendText(`{"t":"event","event":${options.events.json(event)}}`);
        });
      };
      if (headerScope) begin(headerScope);
      const authTimer = setTimeout(() => {
        if (!authed) refuse(4401, 'no auth message');
      }, options.authTimeoutMs);

      socket.on('message', (data: Buffer, isBinary: boolean) => {
        let parsed: unknown;
        try {
          parsed = isBinary ? undefined : JSON.parse(data.toString('utf8'));
        } catch {
          parsed = undefined;
        }
        if (!checkMessage.Check(parsed)) {
          const error = new ShoalError('SHOAL_BAD_REQUEST', problemOf(parsed)).toJSON().error;
          // With the request id, when there is one to answer.
          const rid = (parsed as { rid?: unknown } | undefined)?.rid;
          if (authed && (typeof rid === 'string' || typeof rid === 'number')) {
            send({ t: 'result', rid, ok: false, error });
          } else send({ t: 'error', error });
          return;
        }
        const message = parsed as ClientMessage;
        if (message.t === 'auth') {
          if (authed) return;
          const granted = options.keys.scopeOf(message.key);
          if (!granted) {
            refuse(4401, 'unauthorized');
            return;
          }
          begin(granted);
          return;
        }
        if (!authed) {
          refuse(4401, 'authenticate first');
          return;
        }
        if (scope !== 'admin') {
          const error = new ShoalError('SHOAL_FORBIDDEN', 'this key may only read').toJSON().error;
          send({ t: 'result', rid: message.rid, ok: false, error });
          return;
        }
        run(options.nodes, message).then(
          (node) => send({ t: 'result', rid: message.rid, ok: true, ...(node ? { node } : {}) }),
          (err: unknown) => {
            const error = err instanceof ShoalError ? err : new ShoalError('SHOAL_INTERNAL');
            send({ t: 'result', rid: message.rid, ok: false, error: error.toJSON().error });
          },
        );
      });
      socket.on('close', () => {
        clearTimeout(authTimer);
        unsubscribe?.();
        if (authed) options.metrics.eventClients.dec();
        releaseSlot();
      });
    },
  );
};

async function run(nodes: NodeService, message: Exclude<ClientMessage, { t: 'auth' }>): Promise<unknown> {
  switch (message.t) {
    case 'set':
      return nodes.setValue(message.id, message.value);
    case 'create':
      return nodes.create(message.node);
    case 'update':
      return nodes.update(message.id, {
        ...(message.name === undefined ? {} : { name: message.name }),
        ...(message.meta === undefined ? {} : { meta: message.meta }),
      });
    case 'delete':
      await nodes.delete(message.id);
      return undefined;
  }
}
