/**
 * Discovery decides what beacons to send and which received ones to believe. It owns no socket:
 * a DatagramTransport carries the bytes.
 *
 * Protocol: a peer beacons `hello` at start and then every `intervalMs` (± jitter) to every target,
 * or every `settledIntervalMs` while it is settled (some peer connected and every peer it knows
 * connected: there is nothing to find but another mesh on the LAN); a `hello` from a sender not yet
 * known (by id and generation) is answered at once with a unicast `reply`, so two peers learn of
 * each other within one round trip of either starting; a peer that stops beacons `bye`. A datagram
 * is believed only if, in this order: its source is acceptable, the source is within its rate, it
 * decodes (size, magic, version, cluster tag, MAC), its timestamp is within the clock window, and
 * its (sender, nonce) was not seen before. Our own beacons, recognised by id (never by name), are
 * ignored. Refusals are counted by reason and logged at debug, rate-limited; nothing a datagram
 * holds can throw out of the handler.
 */

import { randomBytes } from 'node:crypto';
import type { Cancel, Clock, Random } from '../clock.ts';
import { type Logger, ThrottledLog } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { RateLimiter } from '../rate-limit.ts';
import {
  type Beacon,
  type BeaconKeys,
  type BeaconKindName,
  type BeaconRejection,
  decodeBeacon,
  encodeBeacon,
} from './beacon-codec.ts';
import { ReplayCache } from './replay-cache.ts';
import type { DatagramTransport, Endpoint } from './transport.ts';

/** What this peer says about itself in a beacon. */
export interface BeaconSelf {
  id: string;
  generation: number;
  port: number;
  host: string;
  name: string;
  version: string;
}

export interface HeardBeacon extends Beacon {
  /** Source address of the datagram: the address to dial unless the beacon names a host. */
  address: string;
}

export interface DiscoveryDeps {
  transport: DatagramTransport;
  clock: Clock;
  random: Random;
  keys: BeaconKeys;
  metrics: Pick<Metrics, 'beaconsSent' | 'beaconsReceived' | 'beaconsRejected'>;
  log: Logger;
  self: () => BeaconSelf;
  /** True when there is nothing to look for (see the module comment). */
  settled: () => boolean;
  /** True when the sender, at this generation, is already known (no reply needed). */
  isKnown: (id: string, generation: number) => boolean;
  onBeacon: (beacon: HeardBeacon) => void;
}

export interface DiscoveryOptions {
  beaconPort: number;
  intervalMs: number;
  /** The interval while settled. */
  settledIntervalMs: number;
  jitter: number;
  clockWindowMs: number;
  ratePerSecond: number;
  burst: number;
  /** Sources tracked by the rate limit (Config.beaconRateSources). */
  rateSources: number;
  replayCacheSize: number;
  /** Where to beacon; read before every beacon, since interfaces come and go. */
  targets: () => string[];
  /** Sources to listen to at all (a loopback-only peer ignores the LAN). */
  acceptSource: (address: string) => boolean;
}

export class Discovery {
  readonly #deps: DiscoveryDeps;
  readonly #options: DiscoveryOptions;
  readonly #replays: ReplayCache;
  readonly #rates: RateLimiter;
  readonly #debug: ThrottledLog;
  #timer: Cancel | undefined;
  /** True when the next beacon is due on the settled interval. */
  #slow = false;
  #running = false;

  constructor(deps: DiscoveryDeps, options: DiscoveryOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#replays = new ReplayCache(options.replayCacheSize);
    this.#rates = new RateLimiter({
      ratePerSecond: options.ratePerSecond,
      burst: options.burst,
      maxSources: options.rateSources,
    });
    this.#debug = new ThrottledLog(deps.log);
  }

  async start(): Promise<void> {
    if (this.#running) return;
    await this.#deps.transport.start((data, from) => this.receive(data, from));
    this.#running = true;
    this.announce();
  }

  /** Sends a `hello` now and restarts the interval; used at start and when the peer changes. */
  announce(): void {
    if (!this.#running) return;
    this.#broadcast('hello');
    this.#schedule();
  }

  /**
   * Brings the next beacon forward to the normal interval when it was due on the settled one
   * and the peer is no longer settled (a peer went missing, or a new one appeared).
   */
  unsettled(): void {
    if (this.#running && this.#slow && !this.#deps.settled()) this.#schedule();
  }

  #schedule(): void {
    this.#timer?.();
    const { intervalMs, settledIntervalMs, jitter } = this.#options;
    this.#slow = this.#deps.settled();
    const base = this.#slow ? Math.max(intervalMs, settledIntervalMs) : intervalMs;
    const delay = base * (1 - jitter + 2 * jitter * this.#deps.random());
    this.#timer = this.#deps.clock.setTimer(() => this.announce(), delay);
  }

  /** Beacons `bye` and stops; safe to call twice. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#broadcast('bye');
    this.#running = false;
    this.#timer?.();
    this.#timer = undefined;
    await this.#deps.transport.stop();
  }

  /** Handles one datagram from the transport. Never throws. */
  receive(data: Buffer, from: Endpoint): void {
    const now = this.#deps.clock.now();
    const beacon = this.#admit(data, from, now);
    if (beacon === 'self') return;
    if (typeof beacon === 'string') {
      this.#deps.metrics.beaconsRejected.inc({ reason: beacon });
      this.#debug.debug(`beacon:${beacon}:${from.address}`, now, { reason: beacon, from }, 'beacon refused');
      return;
    }
    this.#deps.metrics.beaconsReceived.inc();
    if (beacon.kind === 'hello' && !this.#deps.isKnown(beacon.senderId, beacon.generation)) {
      this.#send('reply', [from]);
    }
    this.#deps.onBeacon({ ...beacon, address: from.address });
  }

  /** The beacon in a datagram, or why it is refused ('self' for our own, not counted). */
  #admit(data: Buffer, from: Endpoint, now: number): Beacon | BeaconRejection | 'self' {
    const { acceptSource, clockWindowMs } = this.#options;
    if (!acceptSource(from.address)) return 'source';
    if (!this.#rates.allow(`${from.address}:${from.port}`, now)) return 'rate';
    const decoded = decodeBeacon(data, this.#deps.keys);
    if (!decoded.ok) return decoded.reason;
    const beacon = decoded.beacon;
    if (beacon.senderId === this.#deps.self().id) return 'self';
    if (Math.abs(now - beacon.timestampMs) > clockWindowMs) return 'clock';
    const replayKey = `${beacon.senderId}/${beacon.nonce.toString('hex')}`;
    if (this.#replays.seen(replayKey, now, beacon.timestampMs + clockWindowMs)) return 'replay';
    return beacon;
  }

  #broadcast(kind: BeaconKindName): void {
    const port = this.#options.beaconPort;
    let targets: string[];
    try {
      targets = this.#options.targets();
    } catch (err) {
      // Listing the interfaces can fail (no file descriptor left): this beacon is skipped, the
      // next one tries again. From a timer, a throw would end the process.
      this.#deps.log.warn({ err: (err as Error).message }, 'no beacon targets this time');
      return;
    }
    this.#send(
      kind,
      targets.map((address) => ({ address, port })),
    );
  }

  #send(kind: BeaconKindName, to: Endpoint[]): void {
    const self = this.#deps.self();
    const datagram = encodeBeacon(
      {
        kind,
        senderId: self.id,
        generation: self.generation,
        timestampMs: this.#deps.clock.now(),
        nonce: randomBytes(8),
        port: self.port,
        host: self.host,
        name: self.name,
        version: self.version,
      },
      this.#deps.keys,
    );
    for (const endpoint of to) {
      this.#deps.transport.send(datagram, endpoint);
      this.#deps.metrics.beaconsSent.inc({ kind });
    }
  }
}
