/**
 * The peer table (the PeerSessionManager of the original design): what this peer knows of every
 * other, the state of its session, and when to dial whom. Pure logic: it owns no socket and no
 * timer, it is told what happened (beacons, records, dials, links) and answers what to do next
 * (`dueDials`, `nextWakeAt`), so unit tests drive it on a fake clock.
 *
 * Rules:
 * - A peer is `connected` when a link to it is up (route "direct") or it is reachable through
 *   linked peers (route = first hop); `connecting` while a dial to it is under way and it was
 *   heard from since its link was last lost or a dial to it last failed (redials of a silent
 *   peer do not make it flicker, and do not keep it from being forgotten); otherwise
 *   `disconnected`.
 * - When two peers learn of each other at once, the lower id dials at once and the higher waits
 *   `dialGraceMs` for that link first. A lost link is redialled with exponential backoff and
 *   jitter; a beacon from the lost peer cuts the wait short.
 * - A peer that left gracefully (bye) is not dialled again until it shows a newer generation.
 * - A peer disconnected for longer than `peerTtlMs` is forgotten, and records of it that are not
 *   newer than the last one are ignored, so gossip does not bring it back. Static peers are
 *   dialled for as long as the peer runs.
 */

import type { Clock, Random } from '../clock.ts';
import type { PeerRecord } from '../link/messages.ts';
import { type BackoffOptions, backoffDelay } from './backoff.ts';
import { computeRoutes } from './routes.ts';

export type PeerState = 'connected' | 'connecting' | 'disconnected';

/** A peer as the API shows it (GET /api/v1/peers). */
export interface PeerView {
  id: string;
  name: string;
  address: string | null;
  port: number | null;
  model: string;
  version: string;
  os: string;
  platform: string;
  settings: Record<string, unknown>;
  state: PeerState;
  rttMs: number | null;
  lastSeen: string | null;
  since: string;
  route: string | null;
}

/** What the table needs of a live link. */
export interface DirectLink {
  rttMs: number | undefined;
  lastRxAt: number;
  remoteAddress: string;
}

export interface DialPlan {
  /** The peer id, or `static:HOST:PORT` for a static peer whose id is not known yet. */
  key: string;
  address: string;
  port: number;
}

export interface BeaconSighting {
  id: string;
  generation: number;
  kind: 'hello' | 'reply' | 'bye';
  address: string;
  port: number;
  name: string;
  version: string;
}

/** A peer as the table keeps it across restarts (Store.knownPeers): enough to list and dial it. */
export interface SavedPeer {
  record: PeerRecord;
  addresses: string[];
  port: number;
  /** When it was last heard from, ms since the epoch. */
  lastSeen: number;
}

export interface PeerTableOptions extends BackoffOptions {
  dialGraceMs: number;
  peerTtlMs: number;
  gossipDial: boolean;
  staticPeers: { host: string; port: number }[];
}

interface Entry {
  id: string;
  record: PeerRecord | undefined;
  /** Name, port and version from a beacon, until a record arrives. */
  hint: { name: string; version: string };
  generation: number;
  addresses: string[];
  port: number | undefined;
  /** Dial this peer at all (heard by beacon, linked, or learned by gossip with gossipDial). */
  dialable: boolean;
  left: boolean;
  link: DirectLink | undefined;
  dialing: boolean;
  /** Heard from (beacon or newer record) since the link was last lost or a dial last failed: a
   * dial now is hopeful, so the peer shows `connecting` rather than `disconnected` while it runs. */
  fresh: boolean;
  attempts: number;
  nextDialAt: number;
  lastSeen: number | undefined;
  state: PeerState;
  route: string | null;
  since: number;
  /** The signature (state, route, metadata) last announced to listeners; '' before the first. */
  announced: string;
}

interface StaticTarget {
  key: string;
  host: string;
  port: number;
  id: string | undefined;
  dialing: boolean;
  attempts: number;
  nextDialAt: number;
}

const MAX_ADDRESSES = 8;
const MAX_FORGOTTEN = 4096;

export class PeerTable {
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #selfId: string;
  readonly #options: PeerTableOptions;
  readonly #entries = new Map<string, Entry>();
  /** Bumped whenever who is linked to whom may have changed; see `linkVersion`. */
  #linkVersion = 0;
  /** Routes from the last link state, until it moves (`#linksMoved`). */
  #routes: Map<string, string> | undefined;
  readonly #statics = new Map<string, StaticTarget>();
  /** Forgotten peers and the version of the last record seen of them. */
  readonly #forgotten = new Map<string, { generation: number; seq: number }>();
  readonly #listeners: ((view: PeerView) => void)[] = [];

  constructor(deps: { clock: Clock; random: Random; selfId: string }, options: PeerTableOptions) {
    this.#clock = deps.clock;
    this.#random = deps.random;
    this.#selfId = deps.selfId;
    this.#options = options;
    for (const { host, port } of options.staticPeers) {
      const key = `static:${host}:${port}`;
      this.#statics.set(key, { key, host, port, id: undefined, dialing: false, attempts: 0, nextDialAt: 0 });
    }
  }

  /** Calls `listener` with the new view of a peer whenever its state, route or metadata changes. */
  onChange(listener: (view: PeerView) => void): void {
    this.#listeners.push(listener);
  }

  get(id: string): PeerView | undefined {
    const entry = this.#entries.get(id);
    return entry && this.#view(entry);
  }

  /**
   * Every peer, by name regardless of case, then as written, then by id. Compared by code point,
   * not localeCompare: the same order on every server whatever its locale, and no ICU collation
   * data paged in (about 2 MB of RSS).
   */
  views(): PeerView[] {
    const order = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
    return [...this.#entries.values()]
      .map((e) => this.#view(e))
      .sort(
        (a, b) =>
          order(a.name.toLowerCase(), b.name.toLowerCase()) || order(a.name, b.name) || order(a.id, b.id),
      );
  }

  /** Ids of peers with a live direct link. */
  directIds(): string[] {
    return [...this.#entries.values()].filter((e) => e.link).map((e) => e.id);
  }

  /** The newest membership record of a peer. */
  record(id: string): PeerRecord | undefined {
    return this.#entries.get(id)?.record;
  }

  records(): PeerRecord[] {
    return [...this.#entries.values()].flatMap((e) => (e.record ? [e.record] : []));
  }

  /**
   * True when there is nothing to look for: some peer is connected, and every peer the table
   * knows is connected (directly or through others) or has said goodbye. A peer alone, or one
   * whose peer vanished without a word, is not settled.
   */
  settled(): boolean {
    let connected = false;
    for (const entry of this.#entries.values()) {
      if (entry.state === 'connected') connected = true;
      else if (!entry.left) return false;
    }
    return connected;
  }

  /**
   * True when some peer is linked directly and so is every peer that looks up: none is reached
   * only through others, being dialled, or heard from and about to be. Peers whose last dial
   * failed, or that left, do not count.
   */
  formed(): boolean {
    let linked = false;
    for (const entry of this.#entries.values()) {
      if (entry.link) linked = true;
      else if (entry.left) continue;
      else if (entry.state !== 'disconnected') return false;
      else if (entry.fresh && entry.dialable && entry.port !== undefined && entry.addresses.length > 0)
        return false;
    }
    // A static peer not tried yet, or in its first dial, may be one that nothing else reaches.
    for (const target of this.#statics.values())
      if (target.id === undefined && (target.dialing || target.attempts === 0)) return false;
    return linked;
  }

  /** True when the peer is known at this generation (no need to answer its beacon). */
  knows(id: string, generation: number): boolean {
    const entry = this.#entries.get(id);
    return entry !== undefined && entry.generation >= generation && entry.link !== undefined;
  }

  heardBeacon(beacon: BeaconSighting): void {
    const now = this.#clock.now();
    const known = this.#entries.get(beacon.id);
    if (known?.link && isRepeat(known, beacon)) {
      // The steady state of a settled mesh: a linked peer repeats itself. Nothing to recompute.
      known.lastSeen = now;
      return;
    }
    const entry = this.#entry(beacon.id, beacon.generation);
    entry.lastSeen = now;
    entry.fresh = true;
    entry.hint = { name: beacon.name, version: beacon.version };
    entry.port = beacon.port;
    this.#addAddress(entry, beacon.address);
    entry.dialable = true;
    if (beacon.generation > entry.generation) {
      entry.generation = beacon.generation;
      entry.left = false;
    }
    if (beacon.kind === 'bye' && beacon.generation >= entry.generation) entry.left = true;
    if (!entry.link && !entry.dialing && !entry.left) {
      entry.nextDialAt = Math.min(entry.nextDialAt, now + this.#tieDelay(entry.id));
    }
    this.#refresh();
  }

  /**
   * Takes a record learned from a link; true when it was newer than what the table had (the
   * caller then floods it on). Records about this peer itself are ignored.
   */
  learnedRecord(record: PeerRecord): boolean {
    if (record.id === this.#selfId) return false;
    const forgotten = this.#forgotten.get(record.id);
    if (forgotten && !isNewer(record, forgotten)) return false;
    this.#forgotten.delete(record.id);
    const entry = this.#entry(record.id, record.generation);
    if (entry.record && !isNewer(record, entry.record)) return false;
    // Most new records only carry new RTTs: the link state, and so the routes, stay.
    const left = (r: PeerRecord): boolean => r.left === true;
    if (
      !entry.record ||
      left(entry.record) !== left(record) ||
      !sameLinks(entry.record.links, record.links)
    ) {
      this.#linksMoved();
    }
    entry.record = record;
    entry.fresh = record.left !== true;
    entry.port = record.port;
    for (const address of record.addresses) this.#addAddress(entry, address, false);
    if (this.#options.gossipDial) entry.dialable = true;
    if (record.generation > entry.generation) entry.generation = record.generation;
    if (record.generation >= entry.generation) entry.left = record.left === true;
    this.#refresh();
    return true;
  }

  dialStarted(key: string): void {
    const target = this.#statics.get(key) ?? this.#entries.get(key);
    if (target) target.dialing = true;
    this.#refresh();
  }

  /** A dial ended: linked to `remoteId`, or failed when it is undefined. */
  dialEnded(key: string, remoteId?: string): void {
    const now = this.#clock.now();
    const target = this.#statics.get(key) ?? this.#entries.get(key);
    if (!target) return;
    target.dialing = false;
    // A peer's address answered with another id (the server there was replaced): for this peer
    // that is a failed dial, or it would be dialled again at once, forever.
    const answered = remoteId !== undefined && ('host' in target || remoteId === key);
    if (answered) {
      target.attempts = 0;
      if ('host' in target) target.id = remoteId;
    } else {
      target.attempts++;
      target.nextDialAt = now + backoffDelay(target.attempts, this.#options, this.#random);
      if ('fresh' in target) target.fresh = false;
    }
    this.#refresh();
  }

  linkUp(id: string, generation: number, link: DirectLink): void {
    const entry = this.#entry(id, generation);
    if (generation > entry.generation) entry.generation = generation;
    if (generation >= entry.generation) entry.left = false;
    entry.link = link;
    entry.dialable = true;
    entry.attempts = 0;
    entry.lastSeen = this.#clock.now();
    this.#addAddress(entry, link.remoteAddress);
    this.#linksMoved();
    this.#refresh();
  }

  linkDown(id: string): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    entry.lastSeen = entry.link?.lastRxAt ?? entry.lastSeen;
    entry.link = undefined;
    entry.fresh = false;
    entry.nextDialAt =
      this.#clock.now() + backoffDelay(entry.attempts, this.#options, this.#random) + this.#tieDelay(id);
    this.#linksMoved();
    this.#refresh();
  }

  /** Dials that are due now. Each is reported back through dialStarted and dialEnded. */
  dueDials(): DialPlan[] {
    const now = this.#clock.now();
    const plans: DialPlan[] = [];
    for (const entry of this.#entries.values()) {
      if (entry.link || entry.dialing || entry.left || !entry.dialable) continue;
      if (entry.port === undefined || entry.addresses.length === 0 || now < entry.nextDialAt) continue;
      const address = entry.addresses[entry.attempts % entry.addresses.length]!;
      plans.push({ key: entry.id, address, port: entry.port });
    }
    for (const target of this.#statics.values()) {
      if (target.dialing || now < target.nextDialAt) continue;
      const entry = target.id ? this.#entries.get(target.id) : undefined;
      if (entry && (entry.link || entry.dialing)) continue;
      plans.push({ key: target.key, address: target.host, port: target.port });
    }
    return plans;
  }

  /** When the table next has something to do (a dial or an expiry), if ever. */
  nextWakeAt(): number | undefined {
    let next = Number.POSITIVE_INFINITY;
    for (const e of this.#entries.values()) {
      if (!e.link && !e.dialing && !e.left && e.dialable) next = Math.min(next, e.nextDialAt);
      if (e.state === 'disconnected') next = Math.min(next, e.since + this.#options.peerTtlMs);
    }
    for (const t of this.#statics.values()) if (!t.dialing) next = Math.min(next, t.nextDialAt);
    return Number.isFinite(next) ? next : undefined;
  }

  /**
   * Drops a peer for good (it was retired from the mesh): its entry goes, and a static address
   * that led to it is dialled as an unknown one (the caller refuses the peer itself).
   */
  remove(id: string): void {
    if (!this.#entries.delete(id)) return;
    for (const target of this.#statics.values()) if (target.id === id) target.id = undefined;
    this.#linksMoved();
    this.#refresh();
  }

  /** The peers worth remembering across a restart: every one a record was had of. */
  saved(): SavedPeer[] {
    const now = this.#clock.now();
    const out: SavedPeer[] = [];
    for (const e of this.#entries.values()) {
      if (!e.record || e.port === undefined) continue;
      const lastSeen = e.link ? e.link.lastRxAt : (e.lastSeen ?? e.since);
      out.push({ record: e.record, addresses: e.addresses, port: e.port, lastSeen: Math.min(lastSeen, now) });
    }
    return out.sort((a, b) => (a.record.id < b.record.id ? -1 : 1));
  }

  /**
   * A peer known before a restart: listed (disconnected) until heard from again, and dialled at
   * its last addresses with the usual backoff, so the mesh heals even where beacons do not
   * reach. It does not hold up `formed` (it was not heard from since), and it is forgotten when
   * it has been gone for `peerTtlMs`, counted from when it was last heard from. Its record is
   * the last one had, so gossip replaces it only with a newer one, as always.
   */
  remember(saved: SavedPeer): void {
    if (saved.record.id === this.#selfId || this.#entries.has(saved.record.id)) return;
    const entry = this.#entry(saved.record.id, saved.record.generation);
    entry.record = saved.record;
    entry.port = saved.port;
    for (const address of saved.addresses) this.#addAddress(entry, address, false);
    entry.dialable = true;
    entry.fresh = false;
    entry.left = saved.record.left === true;
    entry.lastSeen = saved.lastSeen;
    this.#linksMoved();
    this.#refresh();
    // Disconnected since it was last heard from (the refresh took it for a change of state now).
    entry.since = Math.min(saved.lastSeen, this.#clock.now());
  }

  /** Forgets peers disconnected for longer than the TTL. */
  expire(): void {
    const now = this.#clock.now();
    for (const entry of this.#entries.values()) {
      if (entry.state !== 'disconnected' || now - entry.since < this.#options.peerTtlMs) continue;
      if ([...this.#statics.values()].some((t) => t.id === entry.id)) continue;
      this.#entries.delete(entry.id);
      this.#linksMoved();
      if (entry.record) {
        this.#forgotten.set(entry.id, { generation: entry.record.generation, seq: entry.record.seq });
        if (this.#forgotten.size > MAX_FORGOTTEN)
          this.#forgotten.delete(this.#forgotten.keys().next().value!);
      }
    }
  }

  #entry(id: string, generation: number): Entry {
    let entry = this.#entries.get(id);
    if (!entry) {
      const now = this.#clock.now();
      entry = {
        id,
        record: undefined,
        hint: { name: '', version: '' },
        generation,
        addresses: [],
        port: undefined,
        dialable: false,
        left: false,
        link: undefined,
        dialing: false,
        fresh: true,
        attempts: 0,
        nextDialAt: now + this.#tieDelay(id),
        lastSeen: undefined,
        state: 'disconnected',
        route: null,
        since: now,
        announced: '',
      };
      this.#entries.set(id, entry);
    }
    return entry;
  }

  /** The lower id dials at once; the higher one gives it `dialGraceMs` first. */
  #tieDelay(id: string): number {
    return this.#selfId < id ? 0 : this.#options.dialGraceMs;
  }

  #addAddress(entry: Entry, address: string, first = true): void {
    if (!address) return;
    const rest = entry.addresses.filter((a) => a !== address);
    if (!first && rest.length < entry.addresses.length) return;
    entry.addresses = (first ? [address, ...rest] : [...rest, address]).slice(0, MAX_ADDRESSES);
  }

  /**
   * Goes up whenever who is linked to whom may have changed (a direct link, a record with other
   * links, a peer gone): what is worked out from the link state can be cached until it moves.
   */
  get linkVersion(): number {
    return this.#linkVersion;
  }

  #linksMoved(): void {
    this.#linkVersion++;
    this.#routes = undefined;
  }

  /**
   * Recomputes states, and routes when the link state moved, and tells listeners about every
   * peer that changed. (Under load every peer announces new RTTs every few seconds: in a mesh of
   * 25 that is several records a second, and routes worked out again for each were a tenth of a
   * busy peer's CPU, with the `linked` answers they threw away.)
   */
  #refresh(): void {
    const now = this.#clock.now();
    if (!this.#routes) {
      const records = new Map<string, PeerRecord>();
      for (const e of this.#entries.values()) if (e.record) records.set(e.id, e.record);
      this.#routes = computeRoutes(this.#selfId, this.directIds(), records);
    }
    const routes = this.#routes;
    for (const entry of this.#entries.values()) {
      const hop = routes.get(entry.id);
      if (entry.link) {
        entry.state = 'connected';
        entry.route = 'direct';
      } else if (hop !== undefined && !entry.left) {
        entry.state = 'connected';
        entry.route = hop;
        entry.lastSeen = now;
      } else {
        entry.state = entry.dialing && entry.fresh && !entry.left ? 'connecting' : 'disconnected';
        entry.route = null;
      }
      const signature = this.#signature(entry);
      if (signature !== entry.announced) {
        if (!entry.announced.startsWith(`${entry.state}|`)) entry.since = now;
        entry.announced = signature;
        const view = this.#view(entry);
        for (const listener of this.#listeners) listener(view);
      }
    }
  }

  /**
   * What listeners are told of when it changes: the peer as a view shows it, and its links (a
   * dashboard redraws the mesh), but not the RTTs its records carry. A busy peer sends a record
   * with new RTTs every few seconds, and each was an event to every stream and page.
   */
  #signature(e: Entry): string {
    const r = e.record;
    return [
      e.state,
      e.route,
      r?.generation,
      r?.name || e.hint.name,
      r?.version || e.hint.version,
      e.port,
      e.addresses[0],
      r?.model,
      r?.os,
      r?.platform,
      JSON.stringify(r?.settings ?? {}),
      r?.links.join(','),
      r?.left,
    ].join('|');
  }

  #view(e: Entry): PeerView {
    const r = e.record;
    const lastSeen = e.link ? e.link.lastRxAt : e.lastSeen;
    return {
      id: e.id,
      name: r?.name || e.hint.name || e.id.slice(0, 8),
      address: e.addresses[0] ?? null,
      port: e.port ?? null,
      model: r?.model ?? 'unknown',
      version: r?.version || e.hint.version,
      os: r?.os ?? 'unknown',
      platform: r?.platform ?? 'unknown',
      settings: r?.settings ?? {},
      state: e.state,
      rttMs: e.link?.rttMs ?? null,
      lastSeen: lastSeen === undefined ? null : new Date(lastSeen).toISOString(),
      since: new Date(e.since).toISOString(),
      route: e.route,
    };
  }
}

function sameLinks(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

function isNewer(a: { generation: number; seq: number }, b: { generation: number; seq: number }): boolean {
  return a.generation > b.generation || (a.generation === b.generation && a.seq > b.seq);
}

/** True when a beacon says nothing the table does not already hold for the entry. */
function isRepeat(entry: Entry, beacon: BeaconSighting): boolean {
  return (
    beacon.kind !== 'bye' &&
    beacon.generation === entry.generation &&
    !entry.left &&
    entry.fresh &&
    entry.dialable &&
    entry.port === beacon.port &&
    entry.addresses[0] === beacon.address &&
    entry.hint.name === beacon.name &&
    entry.hint.version === beacon.version
  );
}
