/**
 * The mesh: joins discovery, links and the peer table. It dials what the table says is due,
 * accepts inbound links, settles duplicate links, floods membership records, and leaves
 * gracefully.
 *
 * Membership gossip: every peer issues a PeerRecord about itself (metadata, addresses, direct
 * links), with a new seq whenever its links change and a new generation at every start. A new link
 * starts with both sides sending every record they know; after that a record that is newer than
 * the one held is passed on to every other link, so records flood the connected mesh. Routes to
 * peers not directly linked come from the flooded links (routes.ts).
 *
 * Duplicate links: when two links to one peer are up, both sides keep the same one: the link to
 * the newer generation of the peer; else the one dialled by the lower id; else the newer link.
 */

import { WebSocket } from 'ws';
import type { Cancel, Clock, Random } from '../clock.ts';
import type { ClusterKeys } from '../crypto.ts';
import type { HeardBeacon } from '../discovery/discovery.ts';
import type { Identity, ServerMetadata } from '../identity.ts';
import { type CloseReason, Link, type LinkOptions } from '../link/link.ts';
import type { LinkMessage, PeerRecord } from '../link/messages.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { RetiredServer } from '../store/store.ts';
import { type DialPlan, PeerTable, type PeerTableOptions, type PeerView } from './peer-table.ts';

export interface MeshDeps {
  clock: Clock;
  random: Random;
  log: Logger;
  metrics: Metrics;
  keys: ClusterKeys;
  identity: Identity;
  /** This server's metadata (read when its record is issued). */
  metadata: () => ServerMetadata;
  /** Addresses other peers can dial this one at. */
  addresses: () => string[];
}

/** What runs on top of the mesh (replication) and hears of its links and messages. */
export interface MeshApplication {
  linkUp(peerId: string): void;
  linkDown(peerId: string): void;
  /** A message of a type the mesh does not handle itself, from a directly linked peer. */
  message(peerId: string, message: LinkMessage): void;
  /** Some peer's state or route changed. */
  routesChanged(): void;
}

export interface MeshOptions extends LinkOptions, Omit<PeerTableOptions, 'staticPeers'> {
  staticPeers: { host: string; port: number }[];
  maxFrameBytes: number;
  maxPendingHandshakes: number;
}

/** How often the mesh wakes to expire peers even when nothing else happens. */
const HOUSEKEEPING_MS = 1000;
/** Housekeeping ticks between checks whether link RTTs moved enough to announce them again. */
const RTT_REFRESH_TICKS = 5;
/** An RTT is announced again when it moved by more than this share of the announced value... */
const RTT_CHANGE_SHARE = 0.5;
/** ...and by more than this many milliseconds (loopback and LAN RTTs jitter by fractions of one). */
const RTT_CHANGE_MS = 1;
/** How long changes to this peer's own record are gathered before it is sent. */
const OWN_RECORD_DEBOUNCE_MS = 20;

export class Mesh {
  readonly table: PeerTable;
  application: MeshApplication | undefined;
  readonly #deps: MeshDeps;
  readonly #options: MeshOptions;
  /** Every link, from its first byte to its close. */
  readonly #links = new Set<Link>();
  /** The link in use to each directly linked peer. */
  readonly #direct = new Map<string, Link>();
  /** Dials under way: the socket and the table key it was planned for. */
  readonly #dials = new Map<WebSocket | Link, string>();
  #seq = 0;
  #left = false;
  #running = false;
  #wake: Cancel | undefined;
  #housekeeping: Cancel | undefined;
  #heartbeat: Cancel | undefined;
  #announce: Cancel | undefined;
  /** `linked` answers, by the lower id and then the higher (no key string per question), valid
   * while the table's `linkVersion` is `#linkedVersion`. */
  readonly #linkedCache = new Map<string, Map<string, boolean>>();
  #linkedVersion = -1;
  /** The link RTTs in the last own record sent, to tell when they moved enough to send again. */
  #announcedRtts = new Map<string, number>();
  /** Peers retired from the mesh (src/replication/retirement.ts): never linked again. */
  readonly #retired = new Map<string, RetiredServer>();
  /** Retired peers whose refused link was logged already (once per run each). */
  readonly #refusedLogged = new Set<string>();
  /** True once the mesh told this server that it was retired: it dials no one any more. */
  #outcast = false;

  constructor(deps: MeshDeps, options: MeshOptions) {
    this.#deps = deps;
    this.#options = options;
    this.table = new PeerTable({ clock: deps.clock, random: deps.random, selfId: deps.identity.id }, options);
    // Only a change of some peer's state or route concerns what runs on top (not a new name).
    const routes = new Map<string, string>();
    this.table.onChange((view) => {
      const route = `${view.state}|${view.route}`;
      if (routes.get(view.id) === route) return;
      routes.set(view.id, route);
      this.application?.routesChanged();
    });
    deps.metrics.gauge('shoal_peers', 'Known peers by state.', ['state'], () => {
      const counts = { connected: 0, connecting: 0, disconnected: 0 };
      for (const peer of this.table.views()) counts[peer.state]++;
      return Object.entries(counts).map(([state, n]) => [{ state }, n]);
    });
    deps.metrics.gauge('shoal_links', 'Peer links by phase (handshake, up).', ['phase'], () => {
      const up = [...this.#links].filter((l) => l.isUp).length;
      return [
        [{ phase: 'up' }, up],
        [{ phase: 'handshake' }, this.#links.size - up],
      ];
    });
    deps.metrics.gauge(
      'shoal_link_rtt_ms',
      'Heartbeat round-trip time of each direct link, ms.',
      ['peer'],
      () =>
        [...this.#direct].flatMap(([peer, link]) =>
          link.rttMs === undefined ? [] : [[{ peer }, link.rttMs]],
        ),
    );
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    let ticks = 0;
    const tick = (): void => {
      this.table.expire();
      this.#pump();
      // Every few seconds, a fresh own record tells the mesh of link RTTs that moved markedly.
      if (++ticks % RTT_REFRESH_TICKS === 0 && this.#rttsMoved()) this.#ownChanged();
      this.#housekeeping = this.#deps.clock.setTimer(tick, HOUSEKEEPING_MS);
    };
    tick();
    // One timer pings every link at once, and on the wall clock's beat (whole multiples of the
    // interval), so the peers of a LAN, whose clocks agree to a few ms, all ping together: a
    // peer then wakes about once per interval for its pings, its pongs and the others' pings,
    // not once per link.
    const interval = this.#options.heartbeatIntervalMs;
    const arm = (): void => {
      this.#heartbeat = this.#deps.clock.setTimer(beat, interval - (this.#deps.clock.now() % interval));
    };
    const beat = (): void => {
      for (const link of this.#links) link.heartbeat();
      arm();
    };
    arm();
  }

  /** Leaves the mesh: tells every linked peer (bye with a final record), then closes all links. */
  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#left = true;
    this.#seq++;
    this.#wake?.();
    this.#housekeeping?.();
    this.#heartbeat?.();
    this.#announce?.();
    const record = this.ownRecord();
    for (const link of this.#direct.values()) link.send({ t: 'bye', record });
    for (const link of [...this.#links]) link.close(link.isUp ? 'bye' : 'stopping');
    for (const socket of this.#dials.keys()) if (socket instanceof WebSocket) socket.terminate();
  }

  peers(): PeerView[] {
    return this.table.views();
  }

  /** One peer as the table has it. */
  peer(id: string): PeerView | undefined {
    return this.table.get(id);
  }

  /** This peer's own membership record. */
  ownRecord(): PeerRecord {
    const meta = this.#deps.metadata();
    return {
      id: this.#deps.identity.id,
      generation: this.#deps.identity.generation,
      seq: this.#seq,
      name: meta.name,
      addresses: this.#deps.addresses(),
      port: meta.port,
      model: meta.model,
      version: meta.version,
      os: meta.os,
      platform: meta.platform,
      settings: meta.settings,
      links: [...this.#direct.keys()].sort(),
      rtts: Object.fromEntries(
        [...this.#direct].flatMap(([id, link]) => (link.rttMs === undefined ? [] : [[id, link.rttMs]])),
      ),
      ...(this.#left ? { left: true } : {}),
    };
  }

  /** True when a link's RTT appeared or moved markedly since the mesh was last told. */
  #rttsMoved(): boolean {
    for (const [id, link] of this.#direct) {
      const now = link.rttMs;
      if (now === undefined) continue;
      const then = this.#announcedRtts.get(id);
      if (then === undefined) return true;
      const moved = Math.abs(now - then);
      if (moved > RTT_CHANGE_MS && moved > then * RTT_CHANGE_SHARE) return true;
    }
    return false;
  }

  /**
   * Drops a peer retired from the mesh and refuses it from now on: its links close (it is told
   * why), the table forgets it, and its beacons and records are ignored.
   */
  retire(record: RetiredServer): void {
    this.#retired.set(record.id, record);
    for (const link of [...this.#links]) if (link.remote?.id === record.id) this.#refuse(link, record);
    this.table.remove(record.id);
  }

  /**
   * This server was retired from the mesh (a copy of a server given up for dead): every peer
   * refuses it, so dialling them again would only cost both ends a handshake every few hundred ms.
   */
  retiredSelf(): void {
    this.#outcast = true;
    this.#wake?.();
  }

  /** Tells a link's retired peer why, and closes the link. */
  #refuse(link: Link, record: RetiredServer): void {
    if (link.isUp) link.send({ t: 'retired', records: [record] });
    link.close('retired');
  }

  /** A beacon from another peer of the cluster. */
  heardBeacon(beacon: HeardBeacon): void {
    if (!this.#running || this.#retired.has(beacon.senderId)) return;
    const existing = this.#direct.get(beacon.senderId);
    if (existing?.remote && beacon.generation > existing.remote.generation) {
      // The peer restarted faster than the failure timeout: its old link is dead already.
      existing.close('superseded');
    }
    this.table.heardBeacon({
      id: beacon.senderId,
      generation: beacon.generation,
      kind: beacon.kind,
      address: beacon.host && beacon.host !== '0.0.0.0' ? beacon.host : beacon.address,
      port: beacon.port,
      name: beacon.name,
      version: beacon.version,
    });
    this.#pump();
  }

  /** An inbound WebSocket on /mesh/v1 from `remoteAddress`. */
  accept(ws: WebSocket, remoteAddress: string): void {
    const pending = [...this.#links].filter((l) => !l.isUp && l.direction === 'inbound').length;
    if (!this.#running || pending >= this.#options.maxPendingHandshakes) {
      this.#deps.metrics.handshakesRejected.inc({ reason: 'busy' });
      ws.close(4005, 'busy');
      return;
    }
    this.#links.add(this.#newLink(ws, 'inbound', remoteAddress));
  }

  #newLink(ws: WebSocket, direction: 'inbound' | 'outbound', remoteAddress: string): Link {
    const { clock, keys, identity, metrics, log } = this.#deps;
    return new Link(
      ws,
      direction,
      remoteAddress,
      {
        clock,
        keys,
        self: identity,
        metrics,
        log,
        handler: {
          up: (link) => this.#linkUp(link),
          message: (link, message) => this.#message(link, message),
          closed: (link, reason) => this.#linkClosed(link, reason),
        },
      },
      this.#options,
    );
  }

  #pump(): void {
    if (!this.#running || this.#outcast) return;
    for (const plan of this.table.dueDials()) this.#dial(plan);
    this.#wake?.();
    const at = this.table.nextWakeAt();
    if (at !== undefined) {
      this.#wake = this.#deps.clock.setTimer(
        () => this.#pump(),
        Math.max(0, at - this.#deps.clock.now()) + 1,
      );
    }
  }

  #dial(plan: DialPlan): void {
    const host = plan.address.includes(':') ? `[${plan.address}]` : plan.address;
    this.table.dialStarted(plan.key);
    let ws: WebSocket;
    try {
      ws = new WebSocket(`ws://${host}:${plan.port}/mesh/v1`, {
        perMessageDeflate: false,
        maxPayload: this.#options.maxFrameBytes,
        handshakeTimeout: this.#options.handshakeTimeoutMs,
      });
    } catch (err) {
      // An address no URL can hold (from gossip or a beacon): a failed dial, not a crash.
      this.#deps.log.debug({ err: (err as Error).message, to: plan }, 'dial refused');
      this.table.dialEnded(plan.key);
      return;
    }
    this.#dials.set(ws, plan.key);
    const failed = (): void => {
      if (this.#dials.delete(ws)) {
        this.table.dialEnded(plan.key);
        this.#pump();
      }
    };
    ws.once('error', (err) => {
      this.#deps.log.debug({ err: err.message, to: plan }, 'dial failed');
      failed();
    });
    ws.once('close', failed);
    ws.once('open', () => {
      this.#dials.delete(ws);
      ws.removeAllListeners('error').removeAllListeners('close');
      if (!this.#running) return ws.terminate();
      const link = this.#newLink(ws, 'outbound', plan.address);
      this.#dials.set(link, plan.key);
      this.#links.add(link);
    });
  }

  #linkUp(link: Link): void {
    const remote = link.remote!;
    const dialKey = this.#dials.get(link);
    this.#dials.delete(link);
    const retired = this.#retired.get(remote.id);
    if (retired) {
      // A copy of a retired server (a backup put back): refused, and a dial to it backs off.
      if (dialKey !== undefined) this.table.dialEnded(dialKey);
      this.#deps.metrics.handshakesRejected.inc({ reason: 'retired' });
      if (!this.#refusedLogged.has(remote.id)) {
        this.#refusedLogged.add(remote.id);
        this.#deps.log.warn(
          { peer: remote.id, name: retired.name, address: link.remoteAddress },
          'refused a link from a server retired from the mesh (said once; counted in shoal_handshakes_rejected_total)',
        );
      }
      this.#refuse(link, retired);
      return;
    }
    if (dialKey !== undefined) this.table.dialEnded(dialKey, remote.id);
    this.#deps.metrics.linksOpened.inc({ direction: link.direction });

    const existing = this.#direct.get(remote.id);
    if (existing && existing !== link) {
      if (this.#prefer(existing, link) === existing) {
        link.close('duplicate');
        return;
      }
    }
    // The new link takes over before the old one closes, so the peer never looks lost.
    this.#direct.set(remote.id, link);
    existing?.close('duplicate');
    this.table.linkUp(remote.id, remote.generation, link);
    this.#ownChanged();
    link.send({ t: 'records', records: [this.ownRecord(), ...this.table.records()] });
    this.application?.linkUp(remote.id);
    this.#deps.log.info(
      { peer: remote.id, direction: link.direction, address: link.remoteAddress },
      'peer linked',
    );
    this.#pump();
  }

  /** The link both sides keep of two to the same peer. */
  #prefer(a: Link, b: Link): Link {
    const ga = a.remote!.generation;
    const gb = b.remote!.generation;
    if (ga !== gb) return ga > gb ? a : b;
    if (a.direction !== b.direction) {
      const lowerDials = this.#deps.identity.id < a.remote!.id ? 'outbound' : 'inbound';
      return a.direction === lowerDials ? a : b;
    }
    return b;
  }

  #linkClosed(link: Link, reason: CloseReason): void {
    this.#links.delete(link);
    const dialKey = this.#dials.get(link);
    if (dialKey !== undefined) {
      this.#dials.delete(link);
      this.table.dialEnded(dialKey);
    }
    const id = link.remote?.id;
    if (link.upAt !== undefined) this.#deps.metrics.linksClosed.inc({ reason });
    if (id === undefined || this.#direct.get(id) !== link) return;
    this.#direct.delete(id);
    this.table.linkDown(id);
    this.application?.linkDown(id);
    this.#deps.log.info({ peer: id, reason }, 'peer link lost');
    if (!this.#running) return;
    this.#ownChanged();
    this.#pump();
  }

  #message(link: Link, message: LinkMessage): void {
    if (message.t === 'records') {
      const fresh = message.records.filter((r) => !this.#retired.has(r.id) && this.table.learnedRecord(r));
      if (fresh.length > 0) this.#relayRecords(fresh, link);
      this.#pump();
    } else if (message.t === 'bye') {
      if (!this.#retired.has(message.record.id) && this.table.learnedRecord(message.record))
        this.#relayRecords([message.record], link);
    } else if (link.remote && this.#direct.get(link.remote.id) === link) {
      this.application?.message(link.remote.id, message);
    }
  }

  /** Sends a message on the direct link to `peerId`; false when there is none. */
  send(peerId: string, message: LinkMessage | Buffer): boolean {
    return this.#direct.get(peerId)?.send(message) ?? false;
  }

  /** True when the direct link to `peerId` has more queued than it should (backpressure). */
  congested(peerId: string): boolean {
    return this.#direct.get(peerId)?.congested ?? false;
  }

  /**
   * Floods a message that `origin` issued: to every direct peer but `from` (whence it came) and
   * `origin`, and, when it came from another peer, only to those not linked to `origin` (the
   * others got it first-hand). Deduplication is the receiver's business.
   */
  flood(message: LinkMessage, origin: string, from?: string): void {
    for (const [peer, link] of this.#direct) {
      if (peer === from || peer === origin) continue;
      if (from !== undefined && this.linked(peer, origin)) continue;
      link.send(message);
    }
  }

  /**
   * The mesh as a graph for the dashboard: every server known (this one included) and every link
   * between two of them that both ends report, with its RTT as either end measured it.
   */
  graph(): {
    servers: { id: string; name: string; state: 'self' | PeerView['state'] }[];
    links: { a: string; b: string; rttMs: number | null }[];
  } {
    const self = this.ownRecord();
    const records = new Map(this.table.records().map((r) => [r.id, r]));
    records.set(self.id, self);
    const servers = [
      { id: self.id, name: self.name, state: 'self' as const },
      ...this.table.views().map((p) => ({ id: p.id, name: p.name, state: p.state })),
    ];
    const links: { a: string; b: string; rttMs: number | null }[] = [];
    for (const record of records.values()) {
      if (record.left) continue;
      for (const other of record.links) {
        if (record.id >= other) continue;
        const back = records.get(other);
        if (!back || back.left || !back.links.includes(record.id)) continue;
        links.push({ a: record.id, b: other, rttMs: record.rtts?.[other] ?? back.rtts?.[record.id] ?? null });
      }
    }
    return { servers, links };
  }

  /** Ids of the peers with a direct link up. */
  directPeers(): string[] {
    return [...this.#direct.keys()];
  }

  /** The direct peer to send to for `peerId`: itself when linked, else the first hop of a route. */
  nextHop(peerId: string): string | undefined {
    if (this.#direct.has(peerId)) return peerId;
    const route = this.table.get(peerId)?.route;
    return route && route !== 'direct' && this.#direct.has(route) ? route : undefined;
  }

  /** See MeshPort.formed (replicator.ts). */
  formed(): boolean {
    return this.table.formed();
  }

  /** Goes up whenever `linked` may answer differently (the link state moved). */
  get linkVersion(): number {
    return this.table.linkVersion;
  }

  /** True when the link state says `a` and `b` are directly linked (both say so). */
  linked(a: string, b: string): boolean {
    // Asked for every (peer, owner) pair at every replication flush and for every replicated op:
    // cached until the link state moves.
    if (this.#linkedVersion !== this.table.linkVersion) {
      this.#linkedCache.clear();
      this.#linkedVersion = this.table.linkVersion;
    }
    const low = a < b ? a : b;
    const high = a < b ? b : a;
    let answers = this.#linkedCache.get(low);
    if (!answers) {
      answers = new Map();
      this.#linkedCache.set(low, answers);
    }
    let answer = answers.get(high);
    if (answer === undefined) {
      const self = this.#deps.identity.id;
      const linksOf = (id: string): readonly string[] =>
        id === self ? [...this.#direct.keys()] : (this.table.record(id)?.links ?? []);
      answer = linksOf(a).includes(b) && linksOf(b).includes(a);
      answers.set(high, answer);
    }
    return answer;
  }

  /** Sends records to every direct link but `except`. */
  /**
   * This peer's own record changed (links, RTTs): tell every direct peer, once for a burst of
   * changes (many links come up at once when a peer joins).
   */
  #ownChanged(): void {
    this.#seq++;
    if (this.#announce) return;
    this.#announce = this.#deps.clock.setTimer(() => {
      this.#announce = undefined;
      if (!this.#running) return;
      const record = this.ownRecord();
      this.#announcedRtts = new Map(Object.entries(record.rtts ?? {}));
      const records = [record];
      for (const link of this.#direct.values()) link.send({ t: 'records', records });
    }, OWN_RECORD_DEBOUNCE_MS);
  }

  /**
   * Passes records learned from `from` on to the direct peers that cannot have them first-hand:
   * not to a record's own peer, nor to a peer linked to it (it sends its record there itself).
   * In a full mesh nothing is relayed; membership costs a frame per change per link.
   */
  #relayRecords(records: PeerRecord[], from: Link): void {
    for (const [peer, link] of this.#direct) {
      if (link === from) continue;
      const needed = records.filter((r) => r.id !== peer && !this.linked(peer, r.id));
      if (needed.length > 0) link.send({ t: 'records', records: needed });
    }
  }
}
