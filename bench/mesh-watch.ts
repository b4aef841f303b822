/**
 * Watches what every peer of a fleet thinks of every other, without polling: one Server-Sent
 * Events stream (GET /api/v1/events) per peer, seeded once from GET /api/v1/peers after the stream
 * is open. Each `peer` event carries the whole PeerView, whose `since` is the observer's own
 * clock time (ms) of its last state change; on one host that clock is the bench's, so times are
 * taken from `since` rather than from when the bench happened to read the event.
 *
 * Ordering: a snapshot may cross an event in flight. Events of one stream arrive in order and the
 * last event of a peer written before the snapshot was taken carries the same state as the
 * snapshot, so the view settles on the truth; at worst it shows a past state for a moment.
 */

import { type ClientRequest, request } from 'node:http';
import type { PeerView } from '../src/mesh/peer-table.ts';
import type { FleetPeer } from './fleet.ts';

/** One peer's view of the others, kept current from its event stream. */
export class PeerWatch {
  readonly observer: FleetPeer;
  readonly views = new Map<string, PeerView>();
  /** When each peer's route last became `direct` (observer's clock, ms since the epoch). */
  readonly directSince = new Map<string, number>();
  /** Events received on the stream (not counting the snapshot). */
  events = 0;
  #request: ClientRequest | undefined;
  #onChange: (watch: PeerWatch, view: PeerView) => void;

  constructor(observer: FleetPeer, onChange: (watch: PeerWatch, view: PeerView) => void) {
    this.observer = observer;
    this.#onChange = onChange;
  }

  get id(): string {
    return this.observer.process.id;
  }

  /** Opens the stream, then reads the current state once. */
  async open(): Promise<void> {
    const peer = this.observer.process;
    await new Promise<void>((resolve, reject) => {
      const req = request(`${peer.url}/api/v1/events`, {
        headers: { authorization: `Bearer ${peer.apiKey}`, accept: 'text/event-stream' },
      });
      this.#request = req;
      req.once('error', reject);
      req.once('response', (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`${peer.name}: GET /api/v1/events answered ${res.statusCode}`));
          res.resume();
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          buffer += chunk;
          for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
            this.#event(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        });
        res.on('error', () => {});
        req.removeListener('error', reject);
        req.on('error', () => {});
        resolve();
      });
      req.end();
    });
    for (const view of await peer.peers()) this.#apply(view);
  }

  close(): void {
    this.#request?.destroy();
    this.#request = undefined;
  }

  #event(block: string): void {
    let type = '';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) type = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
    }
    if (type !== 'peer' || !data) return;
    this.events++;
    const event = JSON.parse(data) as { peer: PeerView; at: string };
    this.#apply(event.peer, Date.parse(event.at));
  }

  /** `at`: when the observer published the change; a snapshot only bounds it by `since`. */
  #apply(view: PeerView, at = Date.parse(view.since)): void {
    const before = this.views.get(view.id);
    if (view.route === 'direct' && before?.route !== 'direct') this.directSince.set(view.id, at);
    this.views.set(view.id, view);
    this.#onChange(this, view);
  }
}

/** When a condition over every watch first held, on the observers' clocks and on the bench's. */
export interface Reached {
  /** The latest `since` among the views the condition depends on (ms since the epoch). */
  at: number;
  /** When the bench saw the condition hold (ms since the epoch). */
  seenAt: number;
}

export interface SeeOptions {
  /** Ids of the observers that count; default every watched peer. */
  observers?: string[];
  /** Changes before this time (ms since the epoch) do not count. */
  notBefore?: number;
  /** Also require the route to be direct, and time the change of route. */
  direct?: boolean;
}

type Waiter = { check: () => number | undefined; resolve: (r: Reached) => void };

/** The watches of a set of peers, and waiting for conditions over all of them. */
export class MeshWatch {
  readonly #watches = new Map<string, PeerWatch>();
  readonly #waiters = new Set<Waiter>();
  readonly #listeners = new Set<(watch: PeerWatch, view: PeerView) => void>();

  /** Watches every peer given (already watched ones are kept). */
  async add(peers: FleetPeer[]): Promise<void> {
    await Promise.all(
      peers.map(async (peer) => {
        const watch = new PeerWatch(peer, (w, view) => this.#changed(w, view));
        this.#watches.set(peer.process.id, watch);
        await watch.open();
      }),
    );
    this.#recheck();
  }

  /** Stops watching one peer (it is about to go away or be restarted). */
  remove(id: string): void {
    this.#watches.get(id)?.close();
    this.#watches.delete(id);
  }

  get watches(): PeerWatch[] {
    return [...this.#watches.values()];
  }

  get events(): number {
    return this.watches.reduce((sum, w) => sum + w.events, 0);
  }

  /** Calls `listener` on every view change until the returned function is called. */
  listen(listener: (watch: PeerWatch, view: PeerView) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves when `check` returns a time (the condition holds; the value is when it came to hold,
   * ms since the epoch); rejects after `timeoutMs`. `check` is evaluated on every change.
   */
  until(what: string, check: () => number | undefined, timeoutMs: number): Promise<Reached> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter: Waiter = {
        check,
        resolve: (reached) => {
          clearTimeout(timer);
          resolve(reached);
        },
      };
      this.#waiters.add(waiter);
      this.#recheck();
    });
  }

  /**
   * When every observer (default: every watched peer) came to see every other peer of `ids` in
   * `state` (and, with `direct`, over a direct link): the latest such change, ms since the epoch;
   * undefined while some observer does not, or saw it change before `notBefore`.
   */
  allSee(ids: string[], state: PeerView['state'], options: SeeOptions = {}): number | undefined {
    let latest = 0;
    for (const watch of this.#watches.values()) {
      if (options.observers && !options.observers.includes(watch.id)) continue;
      for (const id of ids) {
        if (id === watch.id) continue;
        const view = watch.views.get(id);
        if (!view || view.state !== state) return undefined;
        if (options.direct && view.route !== 'direct') return undefined;
        const since = options.direct ? (watch.directSince.get(id) ?? 0) : Date.parse(view.since);
        if (options.notBefore !== undefined && since < options.notBefore) return undefined;
        latest = Math.max(latest, since);
      }
    }
    return latest;
  }

  /** Stops every stream. */
  close(): void {
    for (const watch of this.#watches.values()) watch.close();
    this.#watches.clear();
    this.#waiters.clear();
  }

  #changed(watch: PeerWatch, view: PeerView): void {
    for (const listener of this.#listeners) listener(watch, view);
    this.#recheck();
  }

  #recheck(): void {
    for (const waiter of this.#waiters) {
      const at = waiter.check();
      if (at === undefined) continue;
      this.#waiters.delete(waiter);
      waiter.resolve({ at, seenAt: Date.now() });
    }
  }
}
