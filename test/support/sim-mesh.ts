/**
 * A simulated mesh for replication tests: named peers joined by undirected links, each peer's
 * MeshApplication (a Replicator) reached through the MeshPort the simulation gives it. It models
 * what replication may assume of the real mesh (src/mesh/mesh.ts):
 *
 * - A message sent on an up link arrives later, JSON-copied as on the wire, and the messages of one
 *   direction of a link arrive in the order they were sent (like TCP). A message still on a link
 *   when the link is cut is lost.
 * - Cutting a link tells both ends `linkDown`; restoring it tells both ends `linkUp`; after either,
 *   every peer hears `routesChanged` (the peer table changed).
 * - `linked(a, b)` is the link's state; `nextHop` is the first hop of a shortest path over up
 *   links; `congested` says yes with a set probability, so replication has to lag and catch up.
 * - Optionally, 'ops' messages are also delivered twice or out of order (straight to the
 *   receiver, past the link), to check that replication does not depend on exactly-once delivery.
 *
 * Time is virtual. `VirtualTime.install()` replaces the global setTimeout and setInterval (the
 * Replicator's debounce, lag, gap and forwarding timers) with timers that fire only when the
 * simulation advances its clock, and counts pending setImmediate callbacks, so the simulation
 * knows when everything runnable has run. Nothing sleeps; one seed gives one run, so a failing
 * case replays and shrinks. `settle()` runs until no message is in flight and no timer is pending.
 */

import type { Cancel, Clock, Random } from '../../src/clock.ts';
import { type LinkMessage, parseMessage } from '../../src/link/messages.ts';
import type { MeshApplication } from '../../src/mesh/mesh.ts';
import type { MeshPort } from '../../src/replication/replicator.ts';
import { FAKE_EPOCH, seededRandom } from './fake-clock.ts';

interface VirtualTimer {
  at: number;
  seq: number;
  fn: () => void;
  /** Set for setInterval timers: they come back every this many ms. */
  every?: number;
}

/** What setTimeout returns in virtual time: enough of a Node Timeout for the code under test. */
class VirtualTimeout {
  constructor(readonly seq: number) {}
  unref(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  hasRef(): boolean {
    return true;
  }
  [Symbol.toPrimitive](): number {
    return this.seq;
  }
}

type TimerGlobals = Pick<
  typeof globalThis,
  'setTimeout' | 'clearTimeout' | 'setInterval' | 'clearInterval' | 'setImmediate' | 'clearImmediate'
>;

/** Virtual time for a simulation; a Clock too (now and setTimer), for the code under test. */
export class VirtualTime implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, VirtualTimer>();
  readonly #immediates = new Set<NodeJS.Immediate>();
  #saved: TimerGlobals | undefined;

  constructor(start = FAKE_EPOCH) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(fn: () => void, ms: number): Cancel {
    const seq = this.#add(fn, ms);
    return () => {
      this.#timers.delete(seq);
    };
  }

  /** Routes the global timer functions through this virtual time until `uninstall()`. */
  install(): void {
    if (this.#saved) return;
    const g = globalThis as unknown as Record<keyof TimerGlobals, unknown>;
    const saved: TimerGlobals = {
      setTimeout: globalThis.setTimeout,
      clearTimeout: globalThis.clearTimeout,
      setInterval: globalThis.setInterval,
      clearInterval: globalThis.clearInterval,
      setImmediate: globalThis.setImmediate,
      clearImmediate: globalThis.clearImmediate,
    };
    this.#saved = saved;
    const clear = (handle: unknown): void => {
      if (handle instanceof VirtualTimeout) this.#timers.delete(handle.seq);
    };
    g.setTimeout = (fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) =>
      new VirtualTimeout(this.#add(() => fn(...args), ms ?? 0));
    g.clearTimeout = clear;
    g.setInterval = (fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) =>
      new VirtualTimeout(this.#add(() => fn(...args), ms ?? 0, Math.max(1, ms ?? 0)));
    g.clearInterval = clear;
    g.setImmediate = (fn: (...args: unknown[]) => void, ...args: unknown[]) => {
      const handle = saved.setImmediate(() => {
        this.#immediates.delete(handle);
        fn(...args);
      });
      this.#immediates.add(handle);
      return handle;
    };
    g.clearImmediate = (handle: NodeJS.Immediate | undefined) => {
      if (handle) this.#immediates.delete(handle);
      saved.clearImmediate(handle);
    };
  }

  /** Restores the real timer functions and forgets every virtual timer. */
  uninstall(): void {
    const saved = this.#saved;
    if (!saved) return;
    Object.assign(globalThis, saved);
    this.#saved = undefined;
    this.#timers.clear();
  }

  /** Lets every runnable callback and promise continuation run (real event loop turns). */
  async drain(): Promise<void> {
    const realImmediate = this.#saved?.setImmediate ?? setImmediate;
    do {
      await new Promise<void>((resolve) => realImmediate(resolve));
    } while (this.#immediates.size > 0);
  }

  /** One-shot timers pending (intervals are not counted: they never run out). */
  get pendingTimers(): number {
    let n = 0;
    for (const t of this.#timers.values()) if (t.every === undefined) n++;
    return n;
  }

  /** When the earliest one-shot timer is due. */
  nextTimerAt(): number | undefined {
    let next: number | undefined;
    for (const t of this.#timers.values()) {
      if (t.every === undefined && (next === undefined || t.at < next)) next = t.at;
    }
    return next;
  }

  /** Runs the earliest timer (one-shot or interval) that is due now; false when none is. */
  runDue(): boolean {
    let first: VirtualTimer | undefined;
    for (const t of this.#timers.values()) {
      if (t.at <= this.#now && (!first || t.at < first.at || (t.at === first.at && t.seq < first.seq))) {
        first = t;
      }
    }
    if (!first) return false;
    if (first.every === undefined) this.#timers.delete(first.seq);
    else first.at += first.every;
    first.fn();
    return true;
  }

  /** Moves the clock forward to `at` (never back); timers that fall due run at the next step. */
  advanceTo(at: number): void {
    if (at > this.#now) this.#now = at;
  }

  #add(fn: () => void, ms: number, every?: number): number {
    const seq = ++this.#seq;
    const delay = Number.isFinite(ms) ? Math.max(0, ms) : 0;
    this.#timers.set(seq, { at: this.#now + delay, seq, fn, ...(every === undefined ? {} : { every }) });
    return seq;
  }
}

export interface SimMeshOptions {
  /** Seed of every random choice (latency, delivery order, congestion, tampering). */
  seed: number;
  /** Each message takes 0..maxLatencyMs ms (default 2); a link keeps its order regardless. */
  maxLatencyMs?: number;
  /** Probability that `congested(peer)` says yes (default 0). */
  congestion?: number;
  /** Probability that an 'ops' message is also delivered once more, later, past its link. */
  duplicateOps?: number;
  /** Probability that an 'ops' message leaves its link and is delivered later, out of order. */
  reorderOps?: number;
}

interface Carried {
  from: string;
  to: string;
  /** The JSON text, as on the wire. */
  wire: string;
  type: string;
  at: number;
}

interface SimLink {
  up: boolean;
  /** Per direction ("from>to"): messages on the way, oldest first. */
  queues: Map<string, Carried[]>;
}

/** Counts of what the simulated network carried, by message type. */
export interface SimStats {
  sent: Record<string, number>;
  /** The largest message sent of each type, in bytes as encoded. */
  largest: Record<string, number>;
  delivered: Record<string, number>;
  dropped: number;
  tampered: number;
}

export class SimMesh {
  readonly time = new VirtualTime();
  readonly stats: SimStats = { sent: {}, largest: {}, delivered: {}, dropped: 0, tampered: 0 };
  /** Called just before a message is handed to its receiver; may cut links (then it is lost). */
  beforeDeliver: ((from: string, to: string, message: LinkMessage) => void) | undefined;
  readonly #options: Required<SimMeshOptions>;
  readonly #random: Random;
  readonly #apps = new Map<string, MeshApplication>();
  readonly #links = new Map<string, SimLink>();
  /** Messages delivered past any link (duplicates and reordered ones). */
  readonly #loose: Carried[] = [];
  /** Goes up with every link that comes up or goes down (MeshPort.linkVersion). */
  #linkVersion = 0;

  constructor(options: SimMeshOptions) {
    this.#options = { maxLatencyMs: 2, congestion: 0, duplicateOps: 0, reorderOps: 0, ...options };
    this.#random = seededRandom(options.seed);
  }

  /** The MeshPort of peer `id`, for its Replicator; `attach` the Replicator next. */
  port(id: string): MeshPort {
    const sim = this;
    return {
      send: (peer, message) => this.#send(id, peer, message),
      congested: () => this.#options.congestion > 0 && this.#random() < this.#options.congestion,
      directPeers: () => this.neighbours(id),
      nextHop: (peer) => this.#nextHop(id, peer),
      linked: (a, b) => this.isUp(a, b),
      // Every peer reachable is a neighbour (a peer's table knows every peer it can reach).
      formed: () => {
        const direct = this.neighbours(id);
        return (
          direct.length > 0 &&
          direct.every((n) => this.neighbours(n).every((m) => m === id || this.isUp(id, m)))
        );
      },
      get linkVersion() {
        return sim.#linkVersion;
      },
    };
  }

  attach(id: string, app: MeshApplication): void {
    this.#apps.set(id, app);
  }

  isUp(a: string, b: string): boolean {
    return this.#links.get(linkKey(a, b))?.up === true;
  }

  neighbours(id: string): string[] {
    return [...this.#apps.keys()].filter((other) => other !== id && this.isUp(id, other));
  }

  /** Brings the link a-b up: both ends hear linkUp, then every peer hears routesChanged. */
  connect(a: string, b: string): void {
    if (a === b || this.isUp(a, b)) return;
    this.#links.set(linkKey(a, b), { up: true, queues: new Map() });
    this.#linkVersion++;
    this.#apps.get(a)?.linkUp(b);
    this.#apps.get(b)?.linkUp(a);
    this.#routesChanged();
  }

  /** Cuts the link a-b: what is on it is lost, both ends hear linkDown, every peer routesChanged. */
  disconnect(a: string, b: string): void {
    const link = this.#links.get(linkKey(a, b));
    if (!link?.up) return;
    link.up = false;
    this.#linkVersion++;
    for (const queue of link.queues.values()) this.stats.dropped += queue.length;
    link.queues.clear();
    this.#apps.get(a)?.linkDown(b);
    this.#apps.get(b)?.linkDown(a);
    this.#routesChanged();
  }

  /** Messages on links or waiting to be delivered past them. */
  get inFlight(): number {
    let n = this.#loose.length;
    for (const link of this.#links.values()) for (const q of link.queues.values()) n += q.length;
    return n;
  }

  /**
   * Does the next thing: lets runnable callbacks run, then delivers one message that is due (a
   * random one of those due), else runs a due timer, else moves the clock to the next message or
   * timer. False when nothing is left to do.
   */
  async step(): Promise<boolean> {
    await this.time.drain();
    const now = this.time.now();
    const due: { queue: Carried[]; index: number }[] = [];
    for (const link of this.#links.values()) {
      if (!link.up) continue;
      for (const queue of link.queues.values()) {
        if (queue.length > 0 && queue[0]!.at <= now) due.push({ queue, index: 0 });
      }
    }
    this.#loose.forEach((m, index) => {
      if (m.at <= now) due.push({ queue: this.#loose, index });
    });
    if (due.length > 0) {
      const pick = due[Math.floor(this.#random() * due.length)]!;
      const [carried] = pick.queue.splice(pick.index, 1);
      this.#deliver(carried!, pick.queue === this.#loose);
      return true;
    }
    if (this.time.runDue()) return true;
    let next = this.time.nextTimerAt();
    for (const m of this.#pending()) if (next === undefined || m.at < next) next = m.at;
    if (next === undefined) return false;
    this.time.advanceTo(next);
    return true;
  }

  /** Steps until `done()` holds; throws when virtual time runs past `limitMs` from now. */
  async runUntil(done: () => boolean, limitMs = 60_000): Promise<void> {
    const limit = this.time.now() + limitMs;
    while (!done()) {
      if (!(await this.step())) {
        if (done()) return;
        throw new Error('the simulation ran out of things to do before the condition held');
      }
      if (this.time.now() > limit) throw new Error(`the condition did not hold within ${limitMs} ms`);
    }
  }

  /** Lets `ms` of virtual time pass, running everything that falls due. */
  async runFor(ms: number): Promise<void> {
    const until = this.time.now() + ms;
    for (;;) {
      await this.time.drain();
      const nextMessage = Math.min(...this.#pending().map((m) => m.at));
      const next = Math.min(this.time.nextTimerAt() ?? Number.POSITIVE_INFINITY, nextMessage);
      if (next > until) break;
      await this.step();
    }
    this.time.advanceTo(until);
    await this.time.drain();
  }

  /**
   * Runs until nothing is in flight and no timer is pending (the Replicator's debounce, lag and
   * forwarding timers have all fired); throws when that takes more than `limitMs` of virtual time.
   */
  async settle(limitMs = 120_000): Promise<void> {
    const limit = this.time.now() + limitMs;
    while (await this.step()) {
      if (this.time.now() > limit) {
        throw new Error(`not settled after ${limitMs} ms: ${this.inFlight} in flight`);
      }
    }
  }

  /** Waits, in virtual time, for a promise the simulation has to move along. */
  async resolve<T>(promise: Promise<T>, limitMs = 60_000): Promise<T> {
    let settled = false;
    const watched = promise.finally(() => {
      settled = true;
    });
    watched.catch(() => {});
    await this.runUntil(() => settled, limitMs);
    return watched;
  }

  /** Hands a message to peer `to` as if `from` had sent it, at once, past any link. */
  inject(from: string, to: string, message: LinkMessage): void {
    this.#apps.get(to)?.message(from, JSON.parse(JSON.stringify(message)) as LinkMessage);
  }

  #pending(): Carried[] {
    const out = [...this.#loose];
    for (const link of this.#links.values()) {
      if (!link.up) continue;
      for (const queue of link.queues.values()) if (queue[0]) out.push(queue[0]);
    }
    return out;
  }

  #send(from: string, to: string, sent: LinkMessage | Buffer): boolean {
    const link = this.#links.get(linkKey(from, to));
    if (!link?.up || from === to) return false;
    // A pre-encoded message is decoded and checked as a real link's receiver would.
    const message = Buffer.isBuffer(sent) ? decoded(sent) : sent;
    const type = message.t;
    this.stats.sent[type] = (this.stats.sent[type] ?? 0) + 1;
    const direction = `${from}>${to}`;
    let queue = link.queues.get(direction);
    if (!queue) {
      queue = [];
      link.queues.set(direction, queue);
    }
    const latency = Math.floor(this.#random() * (this.#options.maxLatencyMs + 1));
    const last = queue[queue.length - 1]?.at ?? 0;
    const carried: Carried = {
      from,
      to,
      wire: Buffer.isBuffer(sent) ? sent.toString('utf8') : JSON.stringify(message),
      type,
      at: Math.max(last, this.time.now() + latency),
    };
    this.stats.largest[type] = Math.max(this.stats.largest[type] ?? 0, Buffer.byteLength(carried.wire));
    if (type === 'ops') {
      const later = (): number => this.time.now() + 1 + Math.floor(this.#random() * 40);
      if (this.#random() < this.#options.duplicateOps) {
        this.stats.tampered++;
        this.#loose.push({ ...carried, at: later() });
      }
      if (this.#random() < this.#options.reorderOps) {
        this.stats.tampered++;
        this.#loose.push({ ...carried, at: later() });
        return true;
      }
    }
    queue.push(carried);
    return true;
  }

  #deliver(carried: Carried, loose: boolean): void {
    const message = JSON.parse(carried.wire) as LinkMessage;
    this.beforeDeliver?.(carried.from, carried.to, message);
    if (!loose && !this.isUp(carried.from, carried.to)) {
      this.stats.dropped++;
      return;
    }
    this.stats.delivered[carried.type] = (this.stats.delivered[carried.type] ?? 0) + 1;
    this.#apps.get(carried.to)?.message(carried.from, message);
  }

  #nextHop(from: string, to: string): string | undefined {
    if (from === to) return undefined;
    if (this.isUp(from, to)) return to;
    // Breadth-first over up links, remembering each node's first hop from `from`.
    const firstHop = new Map<string, string>();
    const queue: string[] = [];
    for (const n of this.neighbours(from)) {
      firstHop.set(n, n);
      queue.push(n);
    }
    while (queue.length > 0) {
      const at = queue.shift()!;
      if (at === to) return firstHop.get(at);
      for (const n of this.neighbours(at)) {
        if (n !== from && !firstHop.has(n)) {
          firstHop.set(n, firstHop.get(at)!);
          queue.push(n);
        }
      }
    }
    return undefined;
  }

  #routesChanged(): void {
    for (const app of this.#apps.values()) app.routesChanged();
  }
}

function linkKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function decoded(plaintext: Buffer): LinkMessage {
  const parsed = parseMessage(plaintext);
  if (!parsed.ok) throw new Error(`sim mesh: an encoded message failed to parse (${parsed.reason})`);
  return parsed.message;
}
