/**
 * The DatagramTransport contract, run against every implementation: the in-memory LAN (hosts on
 * loopback and hosts on a subnet) and the real UdpTransport on loopback. Real sockets here only
 * ever send from 127.0.0.1 to 127.0.0.1 or 127.255.255.255.
 *
 * The suite waits for datagrams by polling on setImmediate, never by sleeping. To show something
 * did NOT arrive, it sends a marker after it and waits for the marker: by then the other datagram
 * would have arrived too.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, type TestContext, test } from 'node:test';
import type { DatagramTransport, Endpoint } from '../../src/discovery/transport.ts';
import { UdpTransport } from '../../src/discovery/transport.ts';
import { MemoryLan } from '../support/memory-lan.ts';

interface Member {
  transport: DatagramTransport;
  /** The address its datagrams come from. */
  address: string;
}

interface Harness {
  /** A new, not yet started transport; all of one harness share one beacon port. */
  create(): Member;
  /** The broadcast target on the beacon port. */
  broadcast: Endpoint;
}

/** A started transport that records what it receives. */
class Station {
  readonly received: { text: string; from: Endpoint }[] = [];
  readonly transport: DatagramTransport;
  readonly address: string;

  constructor(member: Member) {
    this.transport = member.transport;
    this.address = member.address;
  }

  start(): Promise<void> {
    return this.transport.start((data, from) => this.received.push({ text: data.toString('utf8'), from }));
  }

  got(text: string): { text: string; from: Endpoint }[] {
    return this.received.filter((r) => r.text === text);
  }
}

/** Polls `check` on setImmediate until it holds; fails after `timeoutMs` of real time. */
async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function transportContract(name: string, makeHarness: () => Harness): void {
  describe(`DatagramTransport contract: ${name}`, () => {
    /** Starts `n` stations and stops them all when the test ends. */
    async function stations(t: TestContext, n: number): Promise<{ harness: Harness; all: Station[] }> {
      const harness = makeHarness();
      const all = Array.from({ length: n }, () => new Station(harness.create()));
      t.after(() => Promise.all(all.map((s) => s.transport.stop())));
      for (const s of all) await s.start();
      return { harness, all };
    }

    /** A payload no other test or process sends. */
    const tag = (label: string): string => `${label}-${randomBytes(6).toString('hex')}`;

    test('a broadcast reaches every transport on the beacon port, the sender included', async (t) => {
      const { harness, all } = await stations(t, 3);
      const [a, b, c] = all as [Station, Station, Station];
      const hello = tag('hello');
      a.transport.send(Buffer.from(hello), harness.broadcast);
      await until('the broadcast at all three', () => all.every((s) => s.got(hello).length === 1));
      const sources = all.map((s) => s.got(hello)[0]!.from);
      for (const from of sources) assert.equal(from.address, a.address);
      assert.equal(new Set(sources.map((f) => f.port)).size, 1, 'one source port for one datagram');
      assert.notEqual(sources[0]!.port, harness.broadcast.port, 'sent from a port of its own');

      const fromB = tag('from-b');
      b.transport.send(Buffer.from(fromB), harness.broadcast);
      await until('B’s broadcast at all three', () => all.every((s) => s.got(fromB).length === 1));
      assert.notEqual(c.got(fromB)[0]!.from.port, sources[0]!.port, 'each transport has its own port');
    });

    test('a reply to the source endpoint of a datagram reaches exactly its sender', async (t) => {
      const { harness, all } = await stations(t, 3);
      const [a, b, c] = all as [Station, Station, Station];
      const hello = tag('hello');
      a.transport.send(Buffer.from(hello), harness.broadcast);
      await until('the hello at B', () => b.got(hello).length === 1);

      const reply = tag('reply');
      b.transport.send(Buffer.from(reply), b.got(hello)[0]!.from);
      await until('the reply at A', () => a.got(reply).length === 1);
      assert.equal(a.got(reply)[0]!.from.address, b.address);

      const marker = tag('marker');
      b.transport.send(Buffer.from(marker), harness.broadcast);
      await until('the marker everywhere', () => all.every((s) => s.got(marker).length === 1));
      assert.equal(b.got(reply).length, 0, 'the replier does not hear its reply');
      assert.equal(c.got(reply).length, 0, 'a third transport does not hear the reply');
      assert.equal(a.got(reply).length, 1, 'the sender hears it once');
    });

    test('binary payloads up to 1 KiB arrive intact', async (t) => {
      const { harness, all } = await stations(t, 2);
      const [a, b] = all as [Station, Station];
      const payload = randomBytes(1024);
      const seen: Buffer[] = [];
      const c = harness.create();
      t.after(() => c.transport.stop());
      await c.transport.start((data) => seen.push(Buffer.from(data)));
      a.transport.send(payload, harness.broadcast);
      await until('the payload', () => seen.some((d) => d.equals(payload)));
      assert.ok(b.received.length >= 1);
    });

    test('stop() is safe twice, and before start', async () => {
      const harness = makeHarness();
      const never = harness.create().transport;
      await never.stop();
      await never.stop();
      const station = new Station(harness.create());
      await station.start();
      await station.transport.stop();
      await station.transport.stop();
      assert.doesNotThrow(() => station.transport.send(Buffer.from('late'), harness.broadcast));
    });

    test('start() twice does not double delivery', async (t) => {
      const { harness, all } = await stations(t, 2);
      const [a, b] = all as [Station, Station];
      await b.start();
      const hello = tag('hello');
      a.transport.send(Buffer.from(hello), harness.broadcast);
      const marker = tag('marker');
      a.transport.send(Buffer.from(marker), harness.broadcast);
      await until('both at B', () => b.got(hello).length >= 1 && b.got(marker).length >= 1);
      assert.equal(b.got(hello).length, 1);
    });

    test('after stop() nothing more is delivered to it, and it sends nothing', async (t) => {
      const { harness, all } = await stations(t, 3);
      const [a, b, c] = all as [Station, Station, Station];
      const hello = tag('hello');
      b.transport.send(Buffer.from(hello), harness.broadcast);
      await until('B’s hello at A', () => a.got(hello).length === 1);
      const bSource = a.got(hello)[0]!.from;
      await b.transport.stop();
      const countAtStop = b.received.length;

      const ghost = tag('ghost');
      b.transport.send(Buffer.from(ghost), harness.broadcast);
      const after = tag('after');
      a.transport.send(Buffer.from(after), harness.broadcast);
      a.transport.send(Buffer.from(after), bSource);
      const marker = tag('marker');
      a.transport.send(Buffer.from(marker), harness.broadcast);
      await until('the marker at A and C', () => a.got(marker).length === 1 && c.got(marker).length === 1);

      assert.equal(b.received.length, countAtStop, 'a stopped transport hears nothing');
      assert.equal(c.got(after).length, 1, 'the others still hear broadcasts');
      assert.equal(a.got(ghost).length + c.got(ghost).length, 0, 'a stopped transport sends nothing');
    });
  });
}

transportContract('MemoryLan, several transports on one host', () => {
  const lan = new MemoryLan();
  return {
    create: () => ({ transport: lan.endpoint('127.0.0.1', { beaconPort: 7421 }), address: '127.0.0.1' }),
    broadcast: { address: '127.255.255.255', port: 7421 },
  };
});

transportContract('MemoryLan, one transport per host of a subnet', () => {
  const lan = new MemoryLan();
  let host = 0;
  return {
    create: () => {
      const address = `10.1.0.${++host}`;
      return { transport: lan.endpoint(address, { beaconPort: 7421 }), address };
    },
    broadcast: { address: '10.1.0.255', port: 7421 },
  };
});

transportContract('UdpTransport on loopback', () => {
  // Below the Linux ephemeral range (32768+), so no send socket of another process holds it.
  const beaconPort = 21_000 + Math.floor(Math.random() * 11_000);
  return {
    create: () => ({
      transport: new UdpTransport({
        beaconPort,
        sendFrom: '127.0.0.1',
        onError: (err) => assert.fail(`UDP error: ${err.message}`),
      }),
      address: '127.0.0.1',
    }),
    broadcast: { address: '127.255.255.255', port: beaconPort },
  };
});
