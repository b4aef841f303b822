/**
 * The datagram transport beacons travel on. It only sends and receives; the decisions are made
 * in Discovery. UdpTransport is the real one; test/support/memory-lan.ts is an in-memory LAN with
 * drop, partition and delay controls, and both pass the contract suite in
 * test/unit/datagram-transport.test.ts.
 */

import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';

export interface Endpoint {
  address: string;
  port: number;
}

export type DatagramHandler = (data: Buffer, from: Endpoint) => void;

export interface DatagramTransport {
  /** Starts receiving; resolves once datagrams can be sent and received. */
  start(onDatagram: DatagramHandler): Promise<void>;
  /** Sends one datagram; failures (no route, interface down) are reported, never thrown. */
  send(data: Buffer, to: Endpoint): void;
  /** Stops receiving; safe to call twice. */
  stop(): Promise<void>;
}

export interface UdpTransportOptions {
  /** Port every peer hears beacons on (shared through SO_REUSEADDR). */
  beaconPort: number;
  /** Local address to send from: the peer's bind host, or 0.0.0.0. */
  sendFrom: string;
  /** Multicast group to join on every IPv4 interface, if any. */
  multicastGroup?: string;
  onError?: (err: Error) => void;
}

/**
 * Two sockets: one bound to the shared beacon port with address reuse, which hears broadcast and
 * multicast beacons alongside any other peer on the host; and one on an ephemeral port that sends
 * every beacon. A reply to a beacon goes to the sender's ephemeral port, so with several peers on
 * one host it reaches exactly the one that asked: the kernel hands a unicast datagram to only one
 * of the sockets sharing a reused port.
 */
export class UdpTransport implements DatagramTransport {
  readonly #options: UdpTransportOptions;
  #listen: Socket | undefined;
  #send: Socket | undefined;

  constructor(options: UdpTransportOptions) {
    this.#options = options;
  }

  async start(onDatagram: DatagramHandler): Promise<void> {
    if (this.#listen) return;
    const onError = (err: Error): void => this.#options.onError?.(err);
    const handler = (data: Buffer, rinfo: { address: string; port: number }): void =>
      onDatagram(data, { address: rinfo.address, port: rinfo.port });

    const listen = createSocket({ type: 'udp4', reuseAddr: true });
    listen.on('message', handler).on('error', onError);
    await bind(listen, this.#options.beaconPort, '0.0.0.0');
    const group = this.#options.multicastGroup;
    if (group) {
      for (const address of ipv4Addresses()) {
        try {
          listen.addMembership(group, address);
        } catch (err) {
          onError(err as Error);
        }
      }
    }

    const send = createSocket({ type: 'udp4' });
    send.on('message', handler).on('error', onError);
    await bind(send, 0, this.#options.sendFrom);
    send.setBroadcast(true);
    send.setMulticastTTL(1);
    send.setMulticastLoopback(true);
    this.#listen = listen;
    this.#send = send;
  }

  send(data: Buffer, to: Endpoint): void {
    this.#send?.send(data, to.port, to.address, (err) => {
      if (err) this.#options.onError?.(err);
    });
  }

  async stop(): Promise<void> {
    const sockets = [this.#listen, this.#send];
    this.#listen = this.#send = undefined;
    await Promise.all(
      sockets.map((s) => (s ? new Promise<void>((resolve) => s.close(() => resolve())) : undefined)),
    );
  }
}

function bind(socket: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

/** Addresses of the up, non-loopback IPv4 interfaces. */
export function ipv4Addresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((a) => a && a.family === 'IPv4' && !a.internal)
    .map((a) => a!.address);
}
