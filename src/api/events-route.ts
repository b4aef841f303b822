/**
 * GET /api/v1/events: Server-Sent Events of every change, as it happens. Each event is
 * `id: N`, `event: TYPE`, `data: JSON`. A comment line every 15 s keeps proxies from closing an
 * idle stream. A client whose unsent data exceeds `clientBufferBytes` is too slow and is
 * disconnected rather than buffered without bound; it reconnects and re-reads the state.
 */

import type { FastifyPluginAsync } from 'fastify';
import { ShoalError } from '../errors.ts';
import type { EventBus } from '../events.ts';
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

export const eventRoutes: FastifyPluginAsync<EventRouteOptions> = async (app, options) => {
  app.get('/events', async (request, reply) => {
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
      if (cork() && res.writableLength > options.clientBufferBytes) {
        res.destroy();
        return;
      }
      res.write(`id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    });
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
    request.raw.on('close', () => {
      clearInterval(keepalive);
      unsubscribe();
      options.slots.release();
      options.metrics.eventClients.dec();
    });
  });
};
