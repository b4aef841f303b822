/**
 * The unit-test doubles themselves: FakeClock (time order, timers set while advancing, cancel),
 * the seeded Random, `every` from src/clock.ts on the fake clock, and the MemoryLan controls that
 * the transport contract does not cover (subnets, unicast to a shared port, drop, partition,
 * delay).
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FAKE_EPOCH, FakeClock, scriptedRandom, seededRandom } from '../support/fake-clock.ts';
import { broadcastSubnet, type MemoryEndpoint, MemoryLan } from '../support/memory-lan.ts';

describe('FakeClock', () => {
  test('starts at a fixed epoch and stands still until advanced', () => {
    const clock = new FakeClock();
    assert.equal(clock.now(), FAKE_EPOCH);
    clock.advance(250);
    assert.equal(clock.now(), FAKE_EPOCH + 250);
    assert.equal(new FakeClock(5).now(), 5);
  });

  test('runs due timers in time order, ties in the order they were set, each at its own instant', () => {
    const clock = new FakeClock(0);
    const ran: string[] = [];
    const at = (label: string) => () => ran.push(`${label}@${clock.now()}`);
    clock.setTimer(at('c'), 30);
    clock.setTimer(at('a'), 10);
    clock.setTimer(at('b1'), 20);
    clock.setTimer(at('b2'), 20);
    clock.setTimer(at('late'), 31);
    clock.advance(30);
    assert.deepEqual(ran, ['a@10', 'b1@20', 'b2@20', 'c@30']);
    assert.equal(clock.now(), 30);
    assert.equal(clock.pending, 1);
    clock.advance(1);
    assert.deepEqual(ran.at(-1), 'late@31');
  });

  test('timers set while advancing run when they fall within the window', () => {
    const clock = new FakeClock(0);
    const ran: number[] = [];
    clock.setTimer(() => {
      ran.push(clock.now());
      clock.setTimer(() => ran.push(clock.now()), 5);
      clock.setTimer(() => ran.push(clock.now()), 0);
      clock.setTimer(() => ran.push(clock.now()), 100);
    }, 10);
    clock.advance(20);
    assert.deepEqual(ran, [10, 10, 15]);
    assert.equal(clock.nextAt(), 110);
    assert.equal(clock.runNext(), true);
    assert.deepEqual(ran, [10, 10, 15, 110]);
    assert.equal(clock.runNext(), false);
  });

  test('advance(0) runs timers set with 0 or a negative delay', () => {
    const clock = new FakeClock(0);
    let runs = 0;
    clock.setTimer(() => runs++, 0);
    clock.setTimer(() => runs++, -5);
    assert.equal(runs, 0, 'never synchronously');
    clock.advance(0);
    assert.equal(runs, 2);
  });

  test('a cancelled timer never runs; cancelling twice or after it ran is harmless', () => {
    const clock = new FakeClock(0);
    let runs = 0;
    const cancel = clock.setTimer(() => runs++, 10);
    cancel();
    cancel();
    const ran = clock.setTimer(() => runs++, 5);
    clock.advance(20);
    ran();
    assert.equal(runs, 1);
    assert.equal(clock.pending, 0);
  });

  test('a timer may cancel another due in the same advance', () => {
    const clock = new FakeClock(0);
    const ran: string[] = [];
    let cancelB = (): void => {};
    clock.setTimer(() => {
      ran.push('a');
      cancelB();
    }, 1);
    cancelB = clock.setTimer(() => ran.push('b'), 2);
    clock.advance(5);
    assert.deepEqual(ran, ['a']);
  });

  test('refuses to go back in time', () => {
    assert.throws(() => new FakeClock().advance(-1), RangeError);
    assert.throws(() => new FakeClock().advance(Number.NaN), RangeError);
  });

  test('property: timers run sorted by due time, whatever order they were set in', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 50 }), (delays) => {
        const clock = new FakeClock(0);
        const ran: number[] = [];
        for (const d of delays) clock.setTimer(() => ran.push(clock.now()), d);
        clock.advance(1000);
        assert.deepEqual(
          ran,
          [...delays].sort((x, y) => x - y),
        );
      }),
    );
  });
});

describe('seededRandom and scriptedRandom', () => {
  test('the same seed gives the same sequence, in [0, 1)', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const a = seededRandom(seed);
        const b = seededRandom(seed);
        for (let i = 0; i < 20; i++) {
          const x = a();
          assert.equal(x, b());
          assert.ok(x >= 0 && x < 1);
        }
      }),
    );
    assert.notEqual(seededRandom(1)(), seededRandom(2)());
  });

  test('is spread over [0, 1)', () => {
    const random = seededRandom(42);
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 10_000; i++) buckets[Math.floor(random() * 10)]!++;
    for (const n of buckets) assert.ok(n > 800 && n < 1200, `bucket of ${n}`);
  });

  test('scriptedRandom returns its values, then repeats the last', () => {
    const random = scriptedRandom(0.1, 0.9);
    assert.deepEqual([random(), random(), random()], [0.1, 0.9, 0.9]);
  });
});

describe('MemoryLan', () => {
  const PORT = 7421;

  function setup(options: ConstructorParameters<typeof MemoryLan>[0] = {}) {
    const clock = new FakeClock();
    const lan = new MemoryLan({ clock, ...options });
    const host = async (address: string): Promise<MemoryEndpoint> => {
      const endpoint = lan.endpoint(address, { beaconPort: PORT });
      await endpoint.start(() => {});
      return endpoint;
    };
    return { clock, lan, host };
  }

  const texts = (e: MemoryEndpoint): string[] => e.received.map((r) => r.data.toString());

  test('broadcastSubnet: trailing 255 octets are the host part; multicast reaches all', () => {
    assert.equal(broadcastSubnet('10.0.0.255'), '10.0.0.');
    assert.equal(broadcastSubnet('10.0.255.255'), '10.0.');
    assert.equal(broadcastSubnet('127.255.255.255'), '127.');
    assert.equal(broadcastSubnet('255.255.255.255'), '');
    assert.equal(broadcastSubnet('239.255.74.20'), '');
    assert.equal(broadcastSubnet('10.0.0.7'), undefined);
    assert.equal(broadcastSubnet('10.0.255.7'), undefined);
    assert.equal(broadcastSubnet('::1'), undefined);
  });

  test('a subnet broadcast stays in its subnet; 255.255.255.255 and multicast reach every host', async () => {
    const { clock, host } = setup();
    const a = await host('10.0.0.1');
    const b = await host('10.0.0.2');
    const other = await host('10.0.1.2');
    a.send(Buffer.from('subnet'), { address: '10.0.0.255', port: PORT });
    a.send(Buffer.from('all'), { address: '255.255.255.255', port: PORT });
    a.send(Buffer.from('group'), { address: '239.255.74.20', port: PORT });
    a.send(Buffer.from('wrong port'), { address: '10.0.0.255', port: PORT + 1 });
    clock.advance(0);
    assert.deepEqual(texts(b), ['subnet', 'all', 'group']);
    assert.deepEqual(texts(other), ['all', 'group']);
    assert.deepEqual(texts(a), ['subnet', 'all', 'group']);
  });

  test('unicast to a shared beacon port reaches one endpoint of that host (the last started)', async () => {
    const { clock, host } = setup();
    const a = await host('10.0.0.1');
    const first = await host('10.0.0.2');
    const last = await host('10.0.0.2');
    a.send(Buffer.from('to-port'), { address: '10.0.0.2', port: PORT });
    a.send(Buffer.from('to-first'), first.source);
    a.send(Buffer.from('nowhere'), { address: '10.0.0.3', port: PORT });
    clock.advance(0);
    assert.deepEqual(texts(last), ['to-port']);
    assert.deepEqual(texts(first), ['to-first']);
    assert.equal(a.received.length, 0);
  });

  test('nothing is delivered synchronously, and a send before start goes nowhere', async () => {
    const { clock, lan, host } = setup();
    const a = await host('10.0.0.1');
    const b = await host('10.0.0.2');
    const idle = lan.endpoint('10.0.0.3', { beaconPort: PORT });
    a.send(Buffer.from('x'), b.source);
    idle.send(Buffer.from('y'), b.source);
    assert.equal(b.received.length, 0);
    clock.advance(0);
    assert.deepEqual(texts(b), ['x']);
    assert.equal(lan.log.length, 1);
  });

  test('delay: delivered exactly delayMs after sending', async () => {
    const { clock, lan, host } = setup();
    lan.delayMs = 40;
    const a = await host('10.0.0.1');
    const b = await host('10.0.0.2');
    a.send(Buffer.from('slow'), b.source);
    clock.advance(39);
    assert.equal(b.received.length, 0);
    clock.advance(1);
    assert.deepEqual(texts(b), ['slow']);
  });

  test('an endpoint stopped while a datagram is in flight does not receive it', async () => {
    const { clock, lan, host } = setup();
    lan.delayMs = 10;
    const a = await host('10.0.0.1');
    const b = await host('10.0.0.2');
    a.send(Buffer.from('late'), b.source);
    await b.stop();
    clock.advance(10);
    assert.equal(b.received.length, 0);
    assert.deepEqual(lan.log[0]!.deliveredTo, []);
  });

  test('drop probability 1 loses everything, 0 nothing; in between it is seeded and about right', async () => {
    const run = async (p: number, seed: number): Promise<number> => {
      const { clock, lan, host } = setup({ seed });
      lan.dropProbability = p;
      const a = await host('10.0.0.1');
      const b = await host('10.0.0.2');
      for (let i = 0; i < 2000; i++) a.send(Buffer.from([i & 255]), b.source);
      clock.advance(0);
      return b.received.length;
    };
    assert.equal(await run(1, 1), 0);
    assert.equal(await run(0, 1), 2000);
    const half = await run(0.5, 7);
    assert.ok(half > 850 && half < 1150, `${half} of 2000 arrived`);
    assert.equal(await run(0.5, 7), half, 'the same seed drops the same datagrams');
  });

  test('partition cuts both ways between the groups only, and heal restores it', async () => {
    const { clock, lan, host } = setup();
    const a = await host('10.0.0.1');
    const b = await host('10.0.0.2');
    const c = await host('10.0.0.3');
    lan.partition(['10.0.0.1'], ['10.0.0.2']);
    assert.equal(lan.connected('10.0.0.2', '10.0.0.1'), false);
    a.send(Buffer.from('a'), { address: '10.0.0.255', port: PORT });
    b.send(Buffer.from('b'), { address: '10.0.0.255', port: PORT });
    clock.advance(0);
    assert.deepEqual(texts(a), ['a']);
    assert.deepEqual(texts(b), ['b']);
    assert.deepEqual(texts(c), ['a', 'b']);
    lan.heal();
    a.send(Buffer.from('healed'), b.source);
    clock.advance(0);
    assert.deepEqual(texts(b), ['b', 'healed']);
  });

  test('without a clock, delivery happens on setImmediate', async () => {
    const lan = new MemoryLan();
    const a = lan.endpoint('10.0.0.1', { beaconPort: PORT });
    const b = lan.endpoint('10.0.0.2', { beaconPort: PORT });
    await a.start(() => {});
    const got = new Promise<string>((resolve) => {
      void b.start((data) => resolve(data.toString()));
    });
    a.send(Buffer.from('soon'), b.source);
    assert.equal(b.received.length, 0);
    assert.equal(await got, 'soon');
  });
});
