/**
 * An in-memory LAN for unit tests: DatagramTransports that deliver to each other without sockets,
 * with drop, partition and delay controls. It models UdpTransport (src/discovery/transport.ts):
 *
 * - Each endpoint sits on a host address and listens on the shared beacon port, and has a port of
 *   its own (like the ephemeral send socket) that is the source port of every datagram it sends
 *   and that receives unicast sent to it. Several endpoints may share one address.
 * - A broadcast target reaches every started endpoint listening on the target port whose address
 *   is in the target's subnet, the sender included (as real broadcast loops back): trailing 255
 *   octets are the host part, so 10.0.0.255 reaches 10.0.0.*, 127.255.255.255 reaches 127.*, and
 *   255.255.255.255 reaches everyone. A multicast target (224.0.0.0/4) reaches everyone too.
 * - Unicast to ADDRESS:PORT reaches the endpoint at that address whose own port it is; to the
 *   beacon port it reaches one endpoint there (the last started), as the kernel does with
 *   SO_REUSEADDR.
 *
 * Delivery is never synchronous with `send`: with a clock it is a timer of `delayMs` on that clock
 * (so a FakeClock's `advance(0)` delivers what was sent), without one it is `setImmediate` (or
 * `setTimeout` for a delay). Drops and partitions are decided when a datagram is sent; an
 * endpoint that has stopped by the time of delivery receives nothing.
 */

import type { Clock, Random } from '../../src/clock.ts';
import type { DatagramHandler, DatagramTransport, Endpoint } from '../../src/discovery/transport.ts';
import { seededRandom } from './fake-clock.ts';

export interface MemoryLanOptions {
  /** Schedules deliveries on this clock; by default real `setImmediate`/`setTimeout`. */
  clock?: Clock;
  /** Seed of the drop decisions. */
  seed?: number;
  /** Random source of the drop decisions (overrides `seed`). */
  random?: Random;
}

/** A datagram as it crossed the LAN, for assertions. */
export interface Carried {
  data: Buffer;
  from: Endpoint;
  to: Endpoint;
  /** Endpoints it was handed to (none when dropped or unroutable). */
  deliveredTo: MemoryEndpoint[];
}

const FIRST_PORT = 40_000;

export class MemoryLan {
  /** Probability in [0, 1] that a datagram is lost on the way to each receiver. */
  dropProbability = 0;
  /** Milliseconds from send to delivery. */
  delayMs = 0;
  /** Every datagram sent, in order. */
  readonly log: Carried[] = [];
  readonly #clock: Clock | undefined;
  readonly #random: Random;
  readonly #endpoints = new Set<MemoryEndpoint>();
  #partitions: [Set<string>, Set<string>][] = [];
  #nextPort = FIRST_PORT;
  #startOrder = 0;

  constructor(options: MemoryLanOptions = {}) {
    this.#clock = options.clock;
    this.#random = options.random ?? seededRandom(options.seed ?? 1);
  }

  /** A transport on host `address` that hears beacons on `beaconPort`. */
  endpoint(address: string, options: { beaconPort: number }): MemoryEndpoint {
    const endpoint = new MemoryEndpoint(this, address, options.beaconPort, this.#nextPort++);
    this.#endpoints.add(endpoint);
    return endpoint;
  }

  /** Cuts every path between a host of `a` and a host of `b`, both ways, until `heal()`. */
  partition(a: string[], b: string[]): void {
    this.#partitions.push([new Set(a), new Set(b)]);
  }

  /** Removes every partition. */
  heal(): void {
    this.#partitions = [];
  }

  /** True when a datagram from host `from` can reach host `to` now. */
  connected(from: string, to: string): boolean {
    return !this.#partitions.some(([a, b]) => (a.has(from) && b.has(to)) || (b.has(from) && a.has(to)));
  }

  /** @internal Called by MemoryEndpoint.send. */
  carry(sender: MemoryEndpoint, data: Buffer, to: Endpoint): void {
    const from = { address: sender.address, port: sender.ownPort };
    const carried: Carried = { data: Buffer.from(data), from, to: { ...to }, deliveredTo: [] };
    this.log.push(carried);
    for (const receiver of this.#receivers(to)) {
      if (!this.connected(sender.address, receiver.address)) continue;
      if (this.dropProbability > 0 && this.#random() < this.dropProbability) continue;
      this.#schedule(() => {
        if (receiver.deliver(carried.data, from)) carried.deliveredTo.push(receiver);
      });
    }
  }

  /** @internal */
  nextStartOrder(): number {
    return this.#startOrder++;
  }

  #receivers(to: Endpoint): MemoryEndpoint[] {
    const started = [...this.#endpoints].filter((e) => e.listening);
    const subnet = broadcastSubnet(to.address);
    if (subnet !== undefined) {
      return started.filter((e) => e.beaconPort === to.port && e.address.startsWith(subnet));
    }
    const own = started.find((e) => e.address === to.address && e.ownPort === to.port);
    if (own) return [own];
    const shared = started
      .filter((e) => e.address === to.address && e.beaconPort === to.port)
      .sort((x, y) => y.startOrder - x.startOrder);
    return shared.slice(0, 1);
  }

  #schedule(fn: () => void): void {
    if (this.#clock) {
      this.#clock.setTimer(fn, this.delayMs);
    } else if (this.delayMs > 0) {
      setTimeout(fn, this.delayMs);
    } else {
      setImmediate(fn);
    }
  }
}

/**
 * The address prefix a broadcast or multicast target reaches ('' for everyone), or undefined for
 * a unicast address.
 */
export function broadcastSubnet(address: string): string | undefined {
  const octets = address.split('.');
  if (octets.length !== 4) return undefined;
  const first = Number(octets[0]);
  if (first >= 224 && first <= 239) return '';
  if (octets[3] !== '255') return undefined;
  let hostOctets = 0;
  while (hostOctets < 4 && octets[3 - hostOctets] === '255') hostOctets++;
  const network = octets.slice(0, 4 - hostOctets);
  return network.length === 0 ? '' : `${network.join('.')}.`;
}

export class MemoryEndpoint implements DatagramTransport {
  readonly address: string;
  readonly beaconPort: number;
  /** The port of this endpoint alone: the source port of what it sends. */
  readonly ownPort: number;
  /** Datagrams handed to this endpoint's handler, in order. */
  readonly received: { data: Buffer; from: Endpoint }[] = [];
  readonly #lan: MemoryLan;
  #handler: DatagramHandler | undefined;
  #startOrder = -1;

  constructor(lan: MemoryLan, address: string, beaconPort: number, ownPort: number) {
    this.#lan = lan;
    this.address = address;
    this.beaconPort = beaconPort;
    this.ownPort = ownPort;
  }

  /** Where replies to this endpoint go. */
  get source(): Endpoint {
    return { address: this.address, port: this.ownPort };
  }

  get listening(): boolean {
    return this.#handler !== undefined;
  }

  /** @internal */
  get startOrder(): number {
    return this.#startOrder;
  }

  async start(onDatagram: DatagramHandler): Promise<void> {
    if (this.#handler) return;
    this.#handler = onDatagram;
    this.#startOrder = this.#lan.nextStartOrder();
  }

  send(data: Buffer, to: Endpoint): void {
    if (!this.#handler) return;
    this.#lan.carry(this, data, to);
  }

  async stop(): Promise<void> {
    this.#handler = undefined;
  }

  /** @internal Hands a datagram to the handler; false when stopped. */
  deliver(data: Buffer, from: Endpoint): boolean {
    const handler = this.#handler;
    if (!handler) return false;
    const copy = Buffer.from(data);
    this.received.push({ data: copy, from: { ...from } });
    handler(copy, { ...from });
    return true;
  }
}
