/**
 * GET /api/v1/events: Server-Sent Events of every change, as it happens, or of the types named in
 * `?types=node,peer`. Each event is `id: N`, `event: TYPE`, `data: JSON`. A comment line every 15 s
 * keeps proxies from closing an idle stream. A client whose unsent data exceeds `clientBufferBytes`
 * is too slow and is disconnected rather than buffered without bound; it reconnects and re-reads
 * the state.
 */

import type { FastifyPluginAsync } from 'fastify';
import Type from 'typebox';
import { ShoalError } from '../errors.ts';
import { EVENT_TYPES, type EventBus, eventTypes } from '../events.ts';
import type { Metrics } from '../metrics.ts';
import { corkPerTurn } from './cork.ts';

/** A fixed number of event-stream clients shared by SSE and the WebSocket stream. */
export class ClientSlots {
  #used = 0;
  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  take(): boolean {
    if (this.#used >= this.max) return false;
    this.#used++;
    return true;
  }

  release(): void {
    this.#used = Math.max(0, this.#used - 1);
  }
}

export interface EventRouteOptions {
  events: EventBus;
  metrics: Metrics;
  /** Takes a client slot (false when all are taken) and gives it back. */
  slots: ClientSlots;
  clientBufferBytes: number;
}

const KEEPALIVE_MS = 15_000;

/** `?types=`: the event types a client wants, for the event stream and the WebSocket stream. */
export function typesQuery(noneAllowed: boolean) {
  return Type.Object(
    {
      types: Type.Optional(
        Type.String({
          description: `comma-separated event types to send (${EVENT_TYPES.join(', ')}${noneAllowed ? '; or none, for a client that only writes' : ''}); every type when left out`,
        }),
      ),
    },
    // A misspelt parameter (?type=node) is an error, not every event.
    { additionalProperties: false },
  );
}

export const eventRoutes: FastifyPluginAsync<EventRouteOptions> = async (app, options) => {
  app.get<{ Querystring: { types?: string } }>(
    '/events',
    { schema: { querystring: typesQuery(false) } },
    async (request, reply) => {
      const types = eventTypes(request.query.types, false);
      if (!options.slots.take()) {
        throw new ShoalError(
          'SHOAL_TOO_MANY_CLIENTS',
          `at most ${options.slots.max} event-stream clients at once`,
        );
      }
      options.metrics.eventClients.inc();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write(': shoal event stream\n\n');
      const cork = corkPerTurn(res);
      const unsubscribe = options.events.subscribe((event) => {
        if (types && !types.has(event.type)) return;
        if (cork() && res.writableLength > options.clientBufferBytes) {
          res.destroy();
          return;
        }
        res.write(`id: ${event.id}\nevent: ${event.type}\ndata: ${options.events.json(event)}\n\n`);
      });
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
      request.raw.on('close', () => {
        clearInterval(keepalive);
        unsubscribe();
        options.slots.release();
        options.metrics.eventClients.dec();
      });
    },
  );
};
