/**
 * The event bus behind GET /api/v1/events (SSE) and the /api/v1/stream WebSocket. Every event
 * carries an increasing id. Events are delivered to every subscriber, each one: nothing is
 * coalesced or dropped here; a subscriber too slow to keep up is disconnected by its stream
 * (see Config.eventClientBufferBytes) and catches up by reading the current state.
 */

import { isoTime } from './clock.ts';
import type { PeerView } from './mesh/peer-table.ts';
import type { OpKind, RetiredServer, ShoalNode } from './store/store.ts';

/** Event types. ONLY APPEND TO THIS LIST. */
export type ShoalEvent = { id: number; at: string } & (
  | { type: 'peer'; peer: PeerView }
  | { type: 'node'; op: OpKind; node: ShoalNode }
  | { type: 'automation'; nodeId: string; fire: boolean; state: Record<string, unknown> }
  | { type: 'retired'; server: RetiredServer }
);

type EventBody = ShoalEvent extends infer E ? (E extends ShoalEvent ? Omit<E, 'id' | 'at'> : never) : never;

export class EventBus {
  readonly #subscribers = new Set<(event: ShoalEvent) => void>();
  #nextId = 1;

  /**
   * Delivers `body` to every subscriber, as the event itself: its id and time are added to it
   * (callers pass a fresh object and keep no reference), which spares a copy per event.
   */
  publish(body: EventBody): void {
    const event = body as ShoalEvent;
    event.id = this.#nextId++;
    event.at = isoTime(Date.now()); // Busy peers publish many events per ms.
    for (const subscriber of this.#subscribers) subscriber(event);
  }

  /** Calls `subscriber` with every event from now on; returns the unsubscribe function. */
  subscribe(subscriber: (event: ShoalEvent) => void): () => void {
    this.#subscribers.add(subscriber);
    return () => this.#subscribers.delete(subscriber);
  }

  get size(): number {
    return this.#subscribers.size;
  }
}
