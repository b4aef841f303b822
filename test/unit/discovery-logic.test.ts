/**
 * Discovery (src/discovery/discovery.ts) on the in-memory LAN and a fake clock: when beacons are
 * sent, who is answered, and every reason a datagram is refused, read back from the metrics.
 */

import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import pino from 'pino';
import type { Random } from '../../src/clock.ts';
import {
  type Beacon,
  type BeaconKeys,
  type BeaconKindName,
  decodeBeacon,
  encodeBeacon,
} from '../../src/discovery/beacon-codec.ts';
import {
  type BeaconSelf,
  Discovery,
  type DiscoveryOptions,
  type HeardBeacon,
} from '../../src/discovery/discovery.ts';
import type { Endpoint } from '../../src/discovery/transport.ts';
import { Metrics } from '../../src/metrics.ts';
import { FakeClock, scriptedRandom, seededRandom } from '../support/fake-clock.ts';
import { type MemoryEndpoint, MemoryLan } from '../support/memory-lan.ts';
import { sample } from '../support/prometheus.ts';

const PORT = 7421;
const BROADCAST = '10.0.0.255';
const KEYS: BeaconKeys = { tag: Buffer.from('0011223344556677', 'hex'), beaconKey: Buffer.alloc(32, 0x42) };
const OTHER_CLUSTER: BeaconKeys = {
  tag: Buffer.from('8899aabbccddeeff', 'hex'),
  beaconKey: Buffer.alloc(32, 7),
};
const SAME_TAG_OTHER_KEY: BeaconKeys = { tag: KEYS.tag, beaconKey: Buffer.alloc(32, 8) };

const BASE_OPTIONS: DiscoveryOptions = {
  beaconPort: PORT,
  intervalMs: 1000,
  settledIntervalMs: 10_000,
  jitter: 0.25,
  clockWindowMs: 60_000,
  ratePerSecond: 20,
  burst: 40,
  rateSources: 4096,
  replayCacheSize: 1024,
  targets: () => [BROADCAST],
  acceptSource: () => true,
};

interface TestPeer {
  discovery: Discovery;
  metrics: Metrics;
  self: BeaconSelf;
  endpoint: MemoryEndpoint;
  heard: HeardBeacon[];
  /** Ids isKnown answers true for. */
  known: Set<string>;
  /** What `settled` answers. */
  settled: { value: boolean };
  /** A counter's value, summed over series matching `labels`. */
  count(name: 'sent' | 'received' | 'rejected', labels?: Record<string, string>): Promise<number>;
}

const METRIC = {
  sent: 'shoal_beacons_sent_total',
  received: 'shoal_beacons_received_total',
  rejected: 'shoal_beacons_rejected_total',
} as const;

class Lan {
  readonly clock = new FakeClock();
  readonly lan = new MemoryLan({ clock: this.clock });

  peer(
    address: string,
    options: {
      id?: string;
      name?: string;
      keys?: BeaconKeys;
      random?: Random;
      options?: Partial<DiscoveryOptions>;
    } = {},
  ): TestPeer {
    const metrics = new Metrics({ processMetrics: false });
    const endpoint = this.lan.endpoint(address, { beaconPort: PORT });
    const self: BeaconSelf = {
      id: options.id ?? randomUUID(),
      generation: 1,
      port: 7420,
      host: '',
      name: options.name ?? `peer-${address}`,
      version: '0.1.0',
    };
    const heard: HeardBeacon[] = [];
    const known = new Set<string>();
    const settled = { value: false };
    const discovery = new Discovery(
      {
        transport: endpoint,
        clock: this.clock,
        random: options.random ?? seededRandom(1),
        keys: options.keys ?? KEYS,
        metrics,
        log: pino({ level: 'silent' }),
        self: () => self,
        settled: () => settled.value,
        isKnown: (id) => known.has(id),
        onBeacon: (beacon) => heard.push(beacon),
      },
      { ...BASE_OPTIONS, ...options.options },
    );
    const count = async (name: keyof typeof METRIC, labels: Record<string, string> = {}) =>
      sample(await metrics.text(), METRIC[name], labels);
    return { discovery, metrics, self, endpoint, heard, known, settled, count };
  }

  /** A bare endpoint that records what reaches it, to send made-up beacons and to listen. */
  async raw(address: string, onDatagram: () => void = () => {}): Promise<MemoryEndpoint> {
    const endpoint = this.lan.endpoint(address, { beaconPort: PORT });
    await endpoint.start(onDatagram);
    return endpoint;
  }

  /** Delivers everything sent so far (and what that causes at the same instant). */
  flush(): void {
    this.clock.advance(0);
  }

  beacon(fields: Partial<Beacon> = {}, keys: BeaconKeys = KEYS): Buffer {
    return encodeBeacon(
      {
        kind: 'hello',
        senderId: randomUUID(),
        generation: 1,
        timestampMs: this.clock.now(),
        nonce: randomBytes(8),
        port: 7420,
        host: '',
        name: 'made-up',
        version: '0.1.0',
        ...fields,
      },
      keys,
    );
  }
}

/** The beacons an endpoint received, decoded, with the time they arrived. */
function beaconsAt(endpoint: MemoryEndpoint, kind?: BeaconKindName, from?: string): Beacon[] {
  return endpoint.received.flatMap(({ data }) => {
    const r = decodeBeacon(data, KEYS);
    if (!r.ok || (kind && r.beacon.kind !== kind) || (from && r.beacon.senderId !== from)) return [];
    return [r.beacon];
  });
}

const to = (address: string): Endpoint => ({ address, port: PORT });

describe('Discovery: what is sent', () => {
  test('a hello goes to every target at start', async () => {
    const net = new Lan();
    const sniffer = await net.raw('10.0.0.99');
    const a = net.peer('10.0.0.1', {
      options: { targets: () => [BROADCAST, '255.255.255.255'] },
    });
    await a.discovery.start();
    net.flush();
    const hellos = beaconsAt(sniffer, 'hello', a.self.id);
    assert.equal(hellos.length, 2, 'one per target');
    assert.equal(hellos[0]!.timestampMs, net.clock.now());
    assert.equal(hellos[0]!.name, a.self.name);
    assert.equal(await a.count('sent', { kind: 'hello' }), 2);
    await a.discovery.stop();
  });

  test('hellos repeat every interval ± jitter, within bounds, for any random sequence', async () => {
    const net = new Lan();
    const times: number[] = [];
    await net.raw('10.0.0.99', () => times.push(net.clock.now()));
    const a = net.peer('10.0.0.1', { random: seededRandom(99) });
    await a.discovery.start();
    net.clock.advance(100_000);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.ok(gaps.length > 70, `${gaps.length} intervals`);
    for (const gap of gaps) assert.ok(gap >= 750 && gap <= 1250, `gap of ${gap} ms`);
    assert.ok(Math.max(...gaps) - Math.min(...gaps) > 300, 'the jitter actually varies the interval');
    await a.discovery.stop();
  });

  test('the interval is exactly interval·(1 − jitter) and interval·(1 + jitter) at the extremes', async () => {
    for (const [random, expected] of [
      [0, 750],
      [0.5, 1000],
      [1, 1250],
    ] as const) {
      const net = new Lan();
      const sniffer = await net.raw('10.0.0.99');
      const a = net.peer('10.0.0.1', { random: scriptedRandom(random) });
      await a.discovery.start();
      net.clock.advance(expected - 1);
      assert.equal(beaconsAt(sniffer, 'hello').length, 1, `random ${random}: not yet`);
      net.clock.advance(1);
      assert.equal(beaconsAt(sniffer, 'hello').length, 2, `random ${random}: at ${expected} ms`);
      await a.discovery.stop();
    }
  });

  test('announce() beacons at once and restarts the interval', async () => {
    const net = new Lan();
    const sniffer = await net.raw('10.0.0.99');
    const a = net.peer('10.0.0.1', { random: scriptedRandom(0.5) });
    await a.discovery.start();
    net.clock.advance(600);
    a.discovery.announce();
    net.flush();
    assert.equal(beaconsAt(sniffer, 'hello').length, 2);
    net.clock.advance(999);
    assert.equal(beaconsAt(sniffer, 'hello').length, 2, 'the old timer was cancelled');
    net.clock.advance(1);
    assert.equal(beaconsAt(sniffer, 'hello').length, 3);
    await a.discovery.stop();
  });

  test('while settled, hellos repeat on the settled interval; unsettled() brings the next one forward', async () => {
    const net = new Lan();
    const sniffer = await net.raw('10.0.0.99');
    const a = net.peer('10.0.0.1', { random: scriptedRandom(0.5) });
    a.settled.value = true;
    await a.discovery.start();
    net.clock.advance(9999);
    assert.equal(beaconsAt(sniffer, 'hello').length, 1, 'settled: nothing within 10 s');
    net.clock.advance(1);
    assert.equal(beaconsAt(sniffer, 'hello').length, 2, 'settled: the next at 10 s');
    net.clock.advance(300);
    a.discovery.unsettled();
    net.clock.advance(999);
    assert.equal(beaconsAt(sniffer, 'hello').length, 2, 'still settled: unsettled() changes nothing');
    a.settled.value = false;
    a.discovery.unsettled();
    net.clock.advance(999);
    assert.equal(beaconsAt(sniffer, 'hello').length, 2);
    net.clock.advance(1);
    assert.equal(beaconsAt(sniffer, 'hello').length, 3, 'one normal interval after it became unsettled');
    net.clock.advance(1000);
    assert.equal(beaconsAt(sniffer, 'hello').length, 4, 'and on the normal interval from then on');
    await a.discovery.stop();
  });

  test('targets are read before every beacon', async () => {
    const net = new Lan();
    const sniffer = await net.raw('10.0.1.99');
    let targets = [BROADCAST];
    const a = net.peer('10.0.0.1', { random: scriptedRandom(0.5), options: { targets: () => targets } });
    await a.discovery.start();
    net.flush();
    assert.equal(beaconsAt(sniffer).length, 0, 'another subnet');
    targets = ['10.0.1.255'];
    net.clock.advance(1000);
    assert.equal(beaconsAt(sniffer, 'hello').length, 1, 'an interface that came up');
    await a.discovery.stop();
  });

  test('targets that cannot be listed (no file descriptor left) skip a beacon, not the process', async () => {
    const net = new Lan();
    const sniffer = await net.raw('10.0.1.99');
    let fail = true;
    const targets = (): string[] => {
      if (fail) throw new Error('uv_interface_addresses returned Unknown system error 24');
      return ['10.0.1.255'];
    };
    const a = net.peer('10.0.0.1', { random: scriptedRandom(0.5), options: { targets } });
    await a.discovery.start();
    net.flush();
    assert.equal(beaconsAt(sniffer).length, 0, 'skipped');
    fail = false;
    net.clock.advance(1000);
    assert.equal(beaconsAt(sniffer, 'hello').length, 1, 'the next one goes out');
    await a.discovery.stop();
  });

  test('stop() beacons bye once, stops the interval and the transport; twice is safe', async () => {
    const net = new Lan();
    const sniffer = await net.raw('10.0.0.99');
    const a = net.peer('10.0.0.1');
    await a.discovery.start();
    net.flush();
    await a.discovery.stop();
    await a.discovery.stop();
    net.flush();
    assert.equal(beaconsAt(sniffer, 'bye', a.self.id).length, 1);
    assert.equal(await a.count('sent', { kind: 'bye' }), 1);
    assert.equal(a.endpoint.listening, false);
    a.discovery.announce();
    net.clock.advance(10_000);
    assert.equal(beaconsAt(sniffer, 'hello', a.self.id).length, 1, 'no hello after stop');
    sniffer.send(net.beacon(), to('10.0.0.1'));
    net.flush();
    assert.equal(a.heard.length, 0);
  });

  test('start() twice sends one hello', async () => {
    const net = new Lan();
    const sniffer = await net.raw('10.0.0.99');
    const a = net.peer('10.0.0.1');
    await a.discovery.start();
    await a.discovery.start();
    net.flush();
    assert.equal(beaconsAt(sniffer, 'hello').length, 1);
    await a.discovery.stop();
  });
});

describe('Discovery: answering', () => {
  test('a hello from an unknown sender is answered at once, by unicast to its source endpoint', async () => {
    const net = new Lan();
    const a = net.peer('10.0.0.1');
    await a.discovery.start();
    const asker = await net.raw('10.0.0.2');
    const bystander = await net.raw('10.0.0.3');
    net.flush();
    const id = randomUUID();
    asker.send(net.beacon({ senderId: id }), to(BROADCAST));
    net.flush();
    const replies = beaconsAt(asker, 'reply', a.self.id);
    assert.equal(replies.length, 1);
    assert.equal(replies[0]!.name, a.self.name);
    assert.equal(beaconsAt(bystander, 'reply').length, 0, 'the reply is not broadcast');
    assert.equal(a.heard.length, 1);
    assert.equal(a.heard[0]!.senderId, id);
    assert.equal(a.heard[0]!.address, '10.0.0.2', 'the source address is passed on');
    assert.equal(await a.count('sent', { kind: 'reply' }), 1);
    assert.equal(await a.count('received'), 1);
    await a.discovery.stop();
  });

  test('replies, byes, and hellos from known senders are not answered', async () => {
    const net = new Lan();
    const a = net.peer('10.0.0.1');
    await a.discovery.start();
    const other = await net.raw('10.0.0.2');
    const known = randomUUID();
    a.known.add(known);
    other.send(net.beacon({ kind: 'reply' }), to(BROADCAST));
    other.send(net.beacon({ kind: 'bye' }), to(BROADCAST));
    other.send(net.beacon({ kind: 'hello', senderId: known }), to(BROADCAST));
    net.flush();
    assert.equal(a.heard.length, 3, 'all heard');
    assert.equal(beaconsAt(other, 'reply', a.self.id).length, 0);
    assert.equal(await a.count('sent', { kind: 'reply' }), 0);
    await a.discovery.stop();
  });

  test('two peers learn of each other within one round trip, whichever starts first', async () => {
    const net = new Lan();
    const a = net.peer('10.0.0.1');
    const b = net.peer('10.0.0.2');
    await a.discovery.start();
    net.clock.advance(300);
    await b.discovery.start();
    net.flush();
    assert.deepEqual(
      a.heard.map((h) => [h.kind, h.senderId]),
      [['hello', b.self.id]],
    );
    assert.deepEqual(
      b.heard.map((h) => [h.kind, h.senderId]),
      [['reply', a.self.id]],
    );
    assert.equal((await a.count('sent', { kind: 'reply' })) + (await b.count('sent', { kind: 'reply' })), 1);
    await a.discovery.stop();
    await b.discovery.stop();
  });

  test('its own beacons are ignored by id, not counted, even from another address', async () => {
    const net = new Lan();
    const a = net.peer('10.0.0.1', { name: 'twin' });
    await a.discovery.start();
    net.flush();
    assert.equal(a.heard.length, 0, 'its own broadcast came back and was ignored');
    const forger = await net.raw('10.0.0.66');
    forger.send(net.beacon({ senderId: a.self.id, name: 'someone else', port: 9999 }), to(BROADCAST));
    net.flush();
    assert.equal(a.heard.length, 0);
    assert.equal(await a.count('received'), 0);
    assert.equal(await a.count('rejected'), 0);
    assert.equal(beaconsAt(forger, 'reply').length, 0);
    await a.discovery.stop();
  });

  test('a peer with the same name but another id is heard', async () => {
    const net = new Lan();
    const a = net.peer('10.0.0.1', { name: 'twin' });
    const b = net.peer('10.0.0.2', { name: 'twin' });
    await a.discovery.start();
    await b.discovery.start();
    net.flush();
    assert.ok(a.heard.some((h) => h.senderId === b.self.id && h.name === 'twin'));
    assert.ok(b.heard.some((h) => h.senderId === a.self.id && h.name === 'twin'));
    await a.discovery.stop();
    await b.discovery.stop();
  });
});

describe('Discovery: refusals, counted by reason', () => {
  async function setup(options: Partial<DiscoveryOptions> = {}) {
    const net = new Lan();
    const a = net.peer('10.0.0.1', { options });
    await a.discovery.start();
    net.flush();
    const sender = await net.raw('10.0.0.2');
    const send = (datagram: Buffer, from: MemoryEndpoint = sender): void => {
      from.send(datagram, to('10.0.0.1'));
      net.flush();
    };
    return { net, a, sender, send };
  }

  test('a timestamp outside the clock window is refused ("clock"); at its edge it is accepted', async () => {
    const { net, a, send } = await setup();
    const now = net.clock.now();
    send(net.beacon({ timestampMs: now - 60_001 }));
    send(net.beacon({ timestampMs: now + 60_001 }));
    assert.equal(await a.count('rejected', { reason: 'clock' }), 2);
    send(net.beacon({ timestampMs: now - 60_000 }));
    send(net.beacon({ timestampMs: now + 60_000 }));
    assert.equal(a.heard.length, 2);
    await a.discovery.stop();
  });

  test('the same datagram twice is refused the second time ("replay"), and "clock" once its window has passed', async () => {
    const { net, a, send } = await setup();
    const datagram = net.beacon({ kind: 'reply' });
    send(datagram);
    send(datagram);
    assert.equal(a.heard.length, 1);
    assert.equal(await a.count('rejected', { reason: 'replay' }), 1);
    net.clock.advance(60_001);
    send(datagram);
    assert.equal(await a.count('rejected', { reason: 'clock' }), 1);
    assert.equal(a.heard.length, 1);
    await a.discovery.stop();
  });

  test('a nonce is a replay only for the same sender', async () => {
    const { net, a, send } = await setup();
    const nonce = randomBytes(8);
    send(net.beacon({ nonce, kind: 'reply' }));
    send(net.beacon({ nonce, kind: 'reply' }));
    assert.equal(a.heard.length, 2);
    await a.discovery.stop();
  });

  test('another cluster is refused as "cluster", a wrong key with our tag as "mac"', async () => {
    const { net, a, send } = await setup();
    send(net.beacon({}, OTHER_CLUSTER));
    send(net.beacon({}, SAME_TAG_OTHER_KEY));
    assert.equal(await a.count('rejected', { reason: 'cluster' }), 1);
    assert.equal(await a.count('rejected', { reason: 'mac' }), 1);
    assert.equal(a.heard.length, 0);
    await a.discovery.stop();
  });

  test('garbage is refused by size or magic, and never throws', async () => {
    const { a, send } = await setup();
    send(Buffer.alloc(0));
    send(Buffer.alloc(2000));
    send(Buffer.alloc(200, 0x41));
    assert.equal(await a.count('rejected', { reason: 'size' }), 2);
    assert.equal(await a.count('rejected', { reason: 'magic' }), 1);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1100 }), fc.ipV4(), fc.nat(65535), (bytes, address, port) => {
        a.discovery.receive(Buffer.from(bytes), { address, port });
      }),
      { numRuns: 300 },
    );
    assert.equal(a.heard.length, 0);
    await a.discovery.stop();
  });

  test('a source over its rate is refused ("rate") before decoding; it refills; others are unaffected', async () => {
    const { net, a, send } = await setup({ ratePerSecond: 1, burst: 3 });
    for (let i = 0; i < 5; i++) send(net.beacon({ kind: 'reply' }));
    assert.equal(a.heard.length, 3);
    assert.equal(await a.count('rejected', { reason: 'rate' }), 2);
    send(Buffer.alloc(0));
    assert.equal(await a.count('rejected', { reason: 'rate' }), 3, 'garbage costs a token, not a decode');
    assert.equal(await a.count('rejected', { reason: 'size' }), 0);

    const neighbour = await net.raw('10.0.0.3');
    send(net.beacon({ kind: 'reply' }), neighbour);
    assert.equal(a.heard.length, 4, 'another source has its own bucket');

    net.clock.advance(1000);
    send(net.beacon({ kind: 'reply' }));
    send(net.beacon({ kind: 'reply' }));
    assert.equal(a.heard.length, 5, 'one token back after a second');
    assert.equal(await a.count('rejected', { reason: 'rate' }), 4);
    await a.discovery.stop();
  });

  test('a source acceptSource refuses is dropped ("source") before anything else', async () => {
    const net = new Lan();
    const a = net.peer('127.0.0.1', { options: { acceptSource: (address) => address.startsWith('127.') } });
    await a.discovery.start();
    const lan = await net.raw('10.0.0.9');
    const local = await net.raw('127.0.0.2');
    lan.send(net.beacon(), to('127.0.0.1'));
    lan.send(Buffer.alloc(0), to('127.0.0.1'));
    local.send(net.beacon(), to('127.0.0.1'));
    net.flush();
    assert.equal(await a.count('rejected', { reason: 'source' }), 2);
    assert.equal(await a.count('rejected'), 2, 'nothing else counted for them');
    assert.deepEqual(
      a.heard.map((h) => h.address),
      ['127.0.0.2'],
    );
    assert.equal(beaconsAt(lan, 'reply').length, 0, 'no reply to a refused source');
    await a.discovery.stop();
  });

  test('beacons lost or cut off by a partition are simply not heard', async () => {
    const net = new Lan();
    const a = net.peer('10.0.0.1');
    const b = net.peer('10.0.0.2', { random: scriptedRandom(0.5) });
    net.lan.partition(['10.0.0.1'], ['10.0.0.2']);
    await a.discovery.start();
    await b.discovery.start();
    net.clock.advance(5000);
    assert.equal(a.heard.length + b.heard.length, 0);
    net.lan.heal();
    net.clock.advance(1000);
    assert.ok(
      a.heard.some((h) => h.senderId === b.self.id),
      'healed: the next beacon is heard',
    );
    assert.ok(
      b.heard.some((h) => h.senderId === a.self.id && h.kind === 'reply'),
      'and answered',
    );
    assert.equal(await a.count('rejected'), 0);
    await a.discovery.stop();
    await b.discovery.stop();
  });
});
