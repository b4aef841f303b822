/**
 * The event bus behind GET /api/v1/events (SSE) and the /api/v1/stream WebSocket. Every event
 * carries an increasing id. Events are delivered to every subscriber, each one: nothing is
 * coalesced or dropped here; a subscriber too slow to keep up is disconnected by its stream
 * (see Config.eventClientBufferBytes) and catches up by reading the current state.
 */

import { isoTime } from './clock.ts';
import { ShoalError } from './errors.ts';
import type { PeerView } from './mesh/peer-table.ts';
import type { OpKind, RetiredServer, ShoalNode } from './store/store.ts';

/** Event types. ONLY APPEND TO THIS LIST. */
export type ShoalEvent = { id: number; at: string } & (
  | { type: 'peer'; peer: PeerView }
  | { type: 'node'; op: OpKind; node: ShoalNode }
  | { type: 'automation'; nodeId: string; fire: boolean; state: Record<string, unknown> }
  | { type: 'retired'; server: RetiredServer }
);

export type EventType = ShoalEvent['type'];

/** Every event type, as clients name them in `?types=`. */
export const EVENT_TYPES: readonly EventType[] = ['peer', 'node', 'automation', 'retired'];

/**
 * The event types a client of an event stream asked for with `?types=a,b`: every type when it did
 * not ask (undefined), and none for `types=none` where `none` is allowed (the WebSocket stream, for
 * a client that only writes). Throws SHOAL_BAD_REQUEST naming what is wrong.
 */
export function eventTypes(
  asked: string | undefined,
  noneAllowed: boolean,
): ReadonlySet<EventType> | undefined {
  if (asked === undefined) return undefined;
  const known = `${EVENT_TYPES.join(', ')}${noneAllowed ? ', or none alone' : ''}`;
  const names = asked.split(',').map((name) => name.trim());
  if (noneAllowed && names.length === 1 && names[0] === 'none') return new Set();
  if (asked.trim() === '') throw new ShoalError('SHOAL_BAD_REQUEST', `types: name one or more of ${known}`);
  for (const name of names) {
    if ((EVENT_TYPES as readonly string[]).includes(name)) continue;
    const why =
      name === 'none' && !noneAllowed
        ? 'none is for the WebSocket stream (/api/v1/stream), for a client that only writes'
        : `${JSON.stringify(name)} is not one of ${known}`;
    throw new ShoalError('SHOAL_BAD_REQUEST', `types: ${why}`);
  }
  return new Set(names as EventType[]);
}

type EventBody = ShoalEvent extends infer E ? (E extends ShoalEvent ? Omit<E, 'id' | 'at'> : never) : never;

export class EventBus {
  readonly #subscribers = new Set<(event: ShoalEvent) => void>();
  #nextId = 1;
  #jsonOf: ShoalEvent | undefined;
  #json = '';

  /**
   * Delivers `body` to every subscriber, as the event itself: its id and time are added to it
   * (callers pass a fresh object and keep no reference), which spares a copy per event.
   */
  publish(body: EventBody): void {
    const event = body as ShoalEvent;
    event.id = this.#nextId++;
    event.at = isoTime(Date.now()); // Busy peers publish many events per ms.
    for (const subscriber of this.#subscribers) subscriber(event);
    // Kept for one delivery only: the event and its JSON are not held on to until the next one.
    this.#jsonOf = undefined;
    this.#json = '';
  }

  /**
   * `event` as JSON, made once for all its subscribers: they are called in turn by `publish`, so
   * the event being delivered is the one they ask for (a subscriber that publishes in between
   * only costs the others a second JSON.stringify).
   */
  json(event: ShoalEvent): string {
    if (event !== this.#jsonOf) {
      this.#json = JSON.stringify(event);
      this.#jsonOf = event;
    }
    return this.#json;
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
