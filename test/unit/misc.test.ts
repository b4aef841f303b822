/**
 * The small pure pieces: ReplayCache, RateLimiter, beacon targets and broadcast addresses,
 * hardware model and platform names, server ids, ThrottledLog, and the event streams' type filter
 * and shared JSON.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import pino from 'pino';
import { corkPerTurn } from '../../src/api/cork.ts';
import { NODE_FLAGS } from '../../src/cli/runtime.ts';
import { ReplayCache } from '../../src/discovery/replay-cache.ts';
import {
  beaconTargets,
  broadcastAddress,
  isLoopback,
  LOOPBACK_BROADCAST,
  MULTICAST_GROUP,
} from '../../src/discovery/targets.ts';
import { EventBus, eventTypes, type ShoalEvent } from '../../src/events.ts';
import { hardwareModel, nextGeneration, platformName } from '../../src/identity.ts';
import { idFromBytes, idToBytes, isId, newId } from '../../src/ids.ts';
import { ThrottledLog } from '../../src/log.ts';
import { Metrics } from '../../src/metrics.ts';
import { RateLimiter } from '../../src/rate-limit.ts';

describe('event types and JSON', () => {
  test('?types= names a set of event types; none only where allowed; anything else is refused by name', () => {
    assert.equal(eventTypes(undefined, true), undefined, 'every type');
    assert.deepEqual([...eventTypes('node, peer', false)!], ['node', 'peer']);
    assert.equal(eventTypes('none', true)!.size, 0);
    for (const [asked, noneAllowed, message] of [
      ['node,', true, 'types: "" is not one of peer, node, automation, retired, or none alone'],
      ['node,Node', false, 'types: "Node" is not one of peer, node, automation, retired'],
      ['none,node', true, 'types: "none" is not one of peer, node, automation, retired, or none alone'],
      [
        'none',
        false,
        'types: none is for the WebSocket stream (/api/v1/stream), for a client that only writes',
      ],
      [' ', false, 'types: name one or more of peer, node, automation, retired'],
    ] as const) {
      assert.throws(
        () => eventTypes(asked, noneAllowed),
        (err: Error & { code?: string }) => err.code === 'SHOAL_BAD_REQUEST' && err.message === message,
        asked,
      );
    }
  });

  test("an event's JSON is made once for all of its subscribers, and is the event's, also when a subscriber publishes", (t) => {
    const bus = new EventBus();
    const server = { id: 'outer', name: 'old', by: 'c', at: '2026-01-01T00:00:00.000Z' };
    const got: [string[], string[]] = [[], []];
    let nested = false;
    bus.subscribe((event) => {
      got[0].push(bus.json(event));
      if (nested) return;
      nested = true;
      bus.publish({ type: 'retired', server: { ...server, id: 'inner' } });
    });
    bus.subscribe((event) => got[1].push(bus.json(event)));
    const stringify = t.mock.method(JSON, 'stringify');
    bus.publish({ type: 'retired', server });
    // outer to the first; inner to both (made once); outer to the second (made again).
    assert.equal(stringify.mock.callCount(), 3);
    const ids = (list: string[]): string[] =>
      list.map((json) => (JSON.parse(json) as { server: { id: string } }).server.id);
    assert.deepEqual(ids(got[0]), ['outer', 'inner']);
    assert.deepEqual(ids(got[1]), ['inner', 'outer']);
    bus.publish({ type: 'retired', server: { ...server, id: 'plain' } });
    assert.equal(stringify.mock.callCount(), 4, 'one JSON for two subscribers');
    assert.equal(got[0][2], got[1][2]);
    assert.equal((JSON.parse(got[1][2]!) as ShoalEvent).id, 3);
  });
});

describe('ReplayCache', () => {
  test('a key is new once, then seen until it expires, then new again', () => {
    const cache = new ReplayCache(16);
    assert.equal(cache.seen('a', 0, 100), false);
    assert.equal(cache.seen('a', 50, 100), true);
    assert.equal(cache.seen('a', 99, 100), true);
    assert.equal(cache.seen('a', 100, 200), false, 'expired at its expiry time');
    assert.equal(cache.seen('a', 150, 300), true);
  });

  test('seeing a key again does not extend its expiry', () => {
    const cache = new ReplayCache(16);
    cache.seen('a', 0, 100);
    assert.equal(cache.seen('a', 10, 10_000), true);
    assert.equal(cache.seen('a', 100, 200), false);
  });

  test('at capacity the oldest entry goes first', () => {
    const cache = new ReplayCache(3);
    for (const key of ['a', 'b', 'c', 'd']) cache.seen(key, 0, 1000);
    assert.equal(cache.size, 3);
    assert.equal(cache.seen('a', 1, 1000), false, 'a, the first in, was evicted');
    assert.equal(cache.seen('c', 1, 1000), true);
    assert.equal(cache.seen('d', 1, 1000), true);
    assert.equal(cache.seen('b', 1, 1000), false, 'remembering a again evicted b, the oldest then');
  });

  test('property: the size never exceeds the capacity, and the newest keys are always remembered', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 200 }),
        (capacity, keys) => {
          const cache = new ReplayCache(capacity);
          for (const k of keys) {
            cache.seen(String(k), 0, 1000);
            assert.ok(cache.size <= capacity);
          }
          const last = keys.at(-1);
          if (last !== undefined) assert.equal(cache.seen(String(last), 0, 1000), true);
        },
      ),
    );
  });
});

describe('RateLimiter', () => {
  test('a burst, then one token per 1/rate seconds, never more than the burst', () => {
    const limiter = new RateLimiter({ ratePerSecond: 2, burst: 3, maxSources: 4096 });
    const take = (now: number, n: number) => Array.from({ length: n }, () => limiter.allow('x', now));
    assert.deepEqual(take(0, 4), [true, true, true, false]);
    assert.deepEqual(take(499, 1), [false]);
    assert.deepEqual(take(500, 2), [true, false]);
    assert.deepEqual(take(100_500, 5), [true, true, true, false, false], 'refilled only up to the burst');
  });

  test('sources have separate buckets', () => {
    const limiter = new RateLimiter({ ratePerSecond: 1, burst: 1, maxSources: 4096 });
    assert.equal(limiter.allow('a', 0), true);
    assert.equal(limiter.allow('a', 0), false);
    assert.equal(limiter.allow('b', 0), true);
  });

  test('a clock that goes back refills nothing and takes nothing away', () => {
    const limiter = new RateLimiter({ ratePerSecond: 1, burst: 2, maxSources: 4096 });
    assert.equal(limiter.allow('a', 10_000), true);
    assert.equal(limiter.allow('a', 0), true);
    assert.equal(limiter.allow('a', 0), false);
  });

  test('at most maxSources are tracked; the least recently used is forgotten (and starts full)', () => {
    const limiter = new RateLimiter({ ratePerSecond: 0.001, burst: 1, maxSources: 2 });
    assert.equal(limiter.allow('a', 0), true);
    assert.equal(limiter.allow('a', 0), false);
    limiter.allow('b', 0);
    assert.equal(limiter.allow('a', 0), false, 'a was used last: b is the older');
    limiter.allow('c', 0);
    assert.equal(limiter.allow('b', 0), true, 'b was forgotten, so it starts with a full bucket');
    assert.equal(limiter.allow('a', 0), true, 'and taking b back pushed out a');
  });

  test('property: over any window a source gets at most burst + rate·window tokens', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 300 }),
        (rate, burst, steps) => {
          const limiter = new RateLimiter({ ratePerSecond: rate, burst, maxSources: 4096 });
          let now = 0;
          let allowed = 0;
          for (const step of steps) {
            now += step;
            if (limiter.allow('x', now)) allowed++;
          }
          assert.ok(allowed <= burst + (rate * now) / 1000 + 1e-9, `${allowed} tokens in ${now} ms`);
        },
      ),
    );
  });
});

describe('beacon targets', () => {
  const iface = (address: string, netmask: string, internal = false): NetworkInterfaceInfo => ({
    address,
    netmask,
    family: 'IPv4',
    mac: '00:00:00:00:00:00',
    internal,
    cidr: null,
  });
  const INTERFACES: Record<string, NetworkInterfaceInfo[] | undefined> = {
    lo: [iface('127.0.0.1', '255.0.0.0', true)],
    eth0: [
      iface('192.168.1.10', '255.255.255.0'),
      {
        address: 'fe80::1',
        netmask: 'ffff:ffff:ffff:ffff::',
        family: 'IPv6',
        mac: '00:00:00:00:00:00',
        internal: false,
        cidr: null,
        scopeid: 2,
      },
    ],
    wlan0: [iface('10.20.30.40', '255.255.0.0')],
    docker0: undefined,
  };
  const base = { host: '0.0.0.0', beaconTargets: [] as string[], multicast: true };

  test('explicit targets replace the defaults, whatever the host', () => {
    const targets = ['10.9.9.255', '192.168.7.3'];
    assert.deepEqual(beaconTargets({ ...base, beaconTargets: targets }, INTERFACES), targets);
    assert.deepEqual(
      beaconTargets({ ...base, host: '127.0.0.1', beaconTargets: targets }, INTERFACES),
      targets,
    );
    const copy = beaconTargets({ ...base, beaconTargets: targets }, INTERFACES);
    copy.push('mutated');
    assert.equal(targets.length, 2, 'a copy is returned');
  });

  test('a loopback host beacons only to the loopback broadcast', () => {
    for (const host of ['127.0.0.1', '127.0.0.2', '::1', 'localhost']) {
      assert.deepEqual(beaconTargets({ ...base, host }, INTERFACES), [LOOPBACK_BROADCAST], host);
    }
  });

  test('a wildcard host: every up, non-loopback IPv4 interface’s broadcast, plus multicast if on', () => {
    assert.deepEqual(beaconTargets(base, INTERFACES), ['192.168.1.255', '10.20.255.255', MULTICAST_GROUP]);
    assert.deepEqual(beaconTargets({ ...base, multicast: false }, INTERFACES), [
      '192.168.1.255',
      '10.20.255.255',
    ]);
    assert.deepEqual(beaconTargets({ ...base, host: '::' }, INTERFACES), [
      '192.168.1.255',
      '10.20.255.255',
      MULTICAST_GROUP,
    ]);
  });

  test('a specific host: only the interface that holds it', () => {
    assert.deepEqual(beaconTargets({ ...base, host: '10.20.30.40' }, INTERFACES), [
      '10.20.255.255',
      MULTICAST_GROUP,
    ]);
  });

  test('no usable interface: the loopback broadcast, without multicast', () => {
    assert.deepEqual(beaconTargets(base, {}), [LOOPBACK_BROADCAST]);
    assert.deepEqual(beaconTargets(base, { lo: INTERFACES.lo }), [LOOPBACK_BROADCAST]);
    assert.deepEqual(beaconTargets({ ...base, host: '192.168.99.1' }, INTERFACES), [LOOPBACK_BROADCAST]);
  });

  test('two interfaces on one subnet give one target', () => {
    const twins = { a: [iface('10.0.0.1', '255.255.255.0')], b: [iface('10.0.0.2', '255.255.255.0')] };
    assert.deepEqual(beaconTargets({ ...base, multicast: false }, twins), ['10.0.0.255']);
  });

  test('broadcastAddress sets the host bits', () => {
    assert.equal(broadcastAddress('192.168.1.10', '255.255.255.0'), '192.168.1.255');
    assert.equal(broadcastAddress('10.20.30.40', '255.255.0.0'), '10.20.255.255');
    assert.equal(broadcastAddress('172.16.5.4', '255.255.240.0'), '172.16.15.255');
    assert.equal(broadcastAddress('10.0.0.7', '255.255.255.255'), '10.0.0.7');
    assert.equal(broadcastAddress('10.0.0.7', '0.0.0.0'), '255.255.255.255');
  });

  test('property: the broadcast keeps the network bits and sets every host bit', () => {
    const toInt = (dotted: string) => dotted.split('.').reduce((acc, p) => acc * 256 + Number(p), 0);
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (address, prefix) => {
        const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
        const netmask = [24, 16, 8, 0].map((s) => (mask >>> s) & 255).join('.');
        const result = toInt(broadcastAddress(address, netmask));
        const hostBits = 2 ** (32 - prefix) - 1;
        assert.equal(result % (hostBits + 1), hostBits, 'host bits all set');
        assert.equal(Math.floor(result / (hostBits + 1)), Math.floor(toInt(address) / (hostBits + 1)));
      }),
    );
  });

  test('isLoopback', () => {
    for (const a of ['127.0.0.1', '127.255.255.255', '::1', 'localhost', '::ffff:127.0.0.1'])
      assert.ok(isLoopback(a), a);
    for (const a of ['0.0.0.0', '10.0.0.1', '::', '128.0.0.1', 'fe80::1', 'localhost.lan']) {
      assert.ok(!isLoopback(a), a);
    }
  });
});

describe('hardware model and platform', () => {
  /** A reader over a fake file system; missing files throw ENOENT as readFileSync does. */
  const reader = (files: Record<string, string>) => (path: string) => {
    const content = files[path];
    if (content === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return content;
  };

  test('the device-tree model, with its trailing NUL removed', () => {
    assert.equal(
      hardwareModel(reader({ '/proc/device-tree/model': 'Raspberry Pi 4 Model B Rev 1.4\0' })),
      'Raspberry Pi 4 Model B Rev 1.4',
    );
    assert.equal(
      hardwareModel(reader({ '/sys/firmware/devicetree/base/model': 'Radxa ROCK 5B\0' })),
      'Radxa ROCK 5B',
    );
  });

  test('the DMI product name when there is no device tree; empty sources are skipped', () => {
    assert.equal(
      hardwareModel(reader({ '/sys/class/dmi/id/product_name': 'OptiPlex 7090\n' })),
      'OptiPlex 7090',
    );
    assert.equal(
      hardwareModel(
        reader({ '/proc/device-tree/model': '\0', '/sys/class/dmi/id/product_name': 'NUC11TNHi5\n' }),
      ),
      'NUC11TNHi5',
    );
  });

  test('"unknown" when nothing can be read', () => {
    assert.equal(hardwareModel(reader({})), 'unknown');
    assert.equal(hardwareModel(reader({ '/sys/class/dmi/id/product_name': '  \n' })), 'unknown');
    assert.equal(
      hardwareModel(() => {
        throw new Error('EACCES');
      }),
      'unknown',
    );
  });

  test('platformName', () => {
    assert.equal(platformName('linux'), 'LINUX');
    assert.equal(platformName('win32'), 'WINDOWS');
    assert.equal(platformName('darwin'), 'MAC');
    assert.equal(platformName('freebsd'), 'FREEBSD');
    assert.match(platformName(), /^[A-Z0-9]+$/);
  });
});

describe('server ids', () => {
  test('newId makes distinct valid ids', () => {
    const a = newId();
    assert.ok(isId(a));
    assert.notEqual(newId(), a);
  });

  test('property: ids round-trip through their 16 wire bytes', () => {
    fc.assert(
      fc.property(fc.uuid(), (id) => {
        const bytes = idToBytes(id);
        assert.equal(bytes.length, 16);
        assert.equal(idFromBytes(bytes), id);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const id = idFromBytes(Buffer.from(bytes));
        assert.ok(isId(id));
        assert.deepEqual(idToBytes(id), Buffer.from(bytes));
      }),
    );
  });

  test('isId accepts only lower-case canonical UUID text', () => {
    assert.ok(isId('01234567-89ab-4cde-8f01-23456789abcd'));
    for (const bad of [
      '01234567-89AB-4CDE-8F01-23456789ABCD',
      '0123456789ab4cde8f0123456789abcd',
      '01234567-89ab-4cde-8f01-23456789abc',
      '{01234567-89ab-4cde-8f01-23456789abcd}',
      '',
      42,
      null,
      undefined,
    ]) {
      assert.equal(isId(bad), false, String(bad));
    }
  });
});

describe('ThrottledLog', () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    return { lines, throttled: new ThrottledLog(log, 1000) };
  }

  test('logs a key at most once per interval, then says how many were skipped', () => {
    const { lines, throttled } = capture();
    throttled.debug('k', 0, { reason: 'mac' }, 'beacon refused');
    throttled.debug('k', 10, { reason: 'mac' }, 'beacon refused');
    throttled.debug('k', 999, { reason: 'mac' }, 'beacon refused');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.msg, 'beacon refused');
    assert.equal(lines[0]!.reason, 'mac');
    assert.equal(lines[0]!.skippedSinceLast, 0);
    throttled.debug('k', 1000, { reason: 'mac' }, 'beacon refused');
    assert.equal(lines.length, 2);
    assert.equal(lines[1]!.skippedSinceLast, 2);
  });

  test('keys are throttled separately', () => {
    const { lines, throttled } = capture();
    throttled.debug('a', 0, {}, 'x');
    throttled.debug('b', 0, {}, 'x');
    throttled.debug('a', 1, {}, 'x');
    assert.equal(lines.length, 2);
  });

  test('memory stays bounded under a flood of distinct keys, and logging goes on', () => {
    const { lines, throttled } = capture();
    for (let i = 0; i < 5000; i++) throttled.debug(`key-${i}`, 0, {}, 'x');
    assert.equal(lines.length, 5000, 'each new key logs once');
    throttled.debug('key-0', 1, {}, 'x');
    assert.equal(lines.length, 5001, 'forgotten keys log again: the map was cleared, not grown');
  });

  test('nothing is written when debug is off', () => {
    const lines: string[] = [];
    const throttled = new ThrottledLog(pino({ level: 'info' }, { write: (l: string) => lines.push(l) }));
    throttled.debug('k', 0, {}, 'x');
    assert.equal(lines.length, 0);
  });
});

describe('node flags', () => {
  test('the #! line of shoal and npm run demo start Node with exactly NODE_FLAGS', () => {
    const flags = NODE_FLAGS.join(' ');
    const shebang = readFileSync(new URL('../../src/cli/main.ts', import.meta.url), 'utf8').split('\n')[0];
    assert.equal(shebang, `#!/usr/bin/env -S node ${flags}`);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    assert.equal(pkg.scripts.demo, `node ${flags} dist/shoal.js demo`);
  });
});

describe('corkPerTurn', () => {
  test('corks at the first write of a turn, uncorks after it, and says which write was first', async () => {
    const calls: string[] = [];
    const first = corkPerTurn({ cork: () => calls.push('cork'), uncork: () => calls.push('uncork') });
    assert.deepEqual([first(), first(), first()], [true, false, false]);
    assert.deepEqual(calls, ['cork']);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(calls, ['cork', 'uncork']);
    assert.equal(first(), true, 'a new turn starts with a new cork');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(calls, ['cork', 'uncork', 'cork', 'uncork']);
  });
});

describe('Generations', () => {
  test('every start takes a newer generation, also after an older identity file is put back', () => {
    const t0 = Date.UTC(2026, 10, 26);
    const first = nextGeneration(0, t0);
    const second = nextGeneration(first, t0); // Restarted within the same second.
    assert.ok(second > first);
    const third = nextGeneration(second, t0 + 60_000);
    assert.ok(third > second);
    // The backup from before the first start holds generation 0: a start an hour later is newer still.
    assert.ok(nextGeneration(0, t0 + 3_600_000) > third);
    assert.ok(nextGeneration(first, t0 + 1000) < 2 ** 32);
  });
});

describe('Process metrics', () => {
  test('event-loop figures: the lag at the scrape and the busy share, no statistics that count the sampling interval', async () => {
    const metrics = new Metrics();
    const value = (text: string, name: string): number | undefined => {
      const row = text.split('\n').find((l) => l.startsWith(`${name} `));
      return row === undefined ? undefined : Number(row.split(' ').pop());
    };
    await metrics.text();
    const spinUntil = performance.now() + 30;
    while (performance.now() < spinUntil); // A busy loop between two scrapes.
    const text = await metrics.text();
    const busy = value(text, 'shoal_nodejs_eventloop_utilization_ratio');
    assert.ok(busy !== undefined && busy > 0.5 && busy <= 1, `utilization ${busy}`);
    assert.ok(value(text, 'shoal_nodejs_eventloop_lag_seconds') !== undefined);
    assert.ok(value(text, 'shoal_process_resident_memory_bytes')! > 0);
    for (const stat of ['min', 'max', 'mean', 'p50', 'p99'])
      assert.equal(value(text, `shoal_nodejs_eventloop_lag_${stat}_seconds`), undefined, stat);
  });
});

describe('Metrics tallies', () => {
  const framesOf = (text: string, peer: string): number | undefined => {
    const row = text
      .split('\n')
      .find((l) => l.startsWith(`shoal_link_frames_total{peer="${peer}",direction="tx"}`));
    return row === undefined ? undefined : Number(row.split(' ').pop());
  };

  test('what a tally adds reaches its counter at each scrape, and what is left when it closes', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const a = metrics.tally(metrics.linkFrames, { peer: 'a', direction: 'tx' });
    const b = metrics.tally(metrics.linkFrames, { peer: 'b', direction: 'tx' });
    a.add();
    a.add(2);
    assert.equal(framesOf(await metrics.text(), 'a'), 3);
    assert.equal(framesOf(await metrics.text(), 'b'), undefined, 'nothing counted, no series');
    a.add(4);
    b.add(1);
    a.close();
    a.add(100); // After close: never reported.
    const text = await metrics.text();
    assert.equal(framesOf(text, 'a'), 7);
    assert.equal(framesOf(text, 'b'), 1);
    // A new tally of the same labels (a link that came back) adds to the same series.
    metrics.tally(metrics.linkFrames, { peer: 'a', direction: 'tx' }).add(3);
    assert.equal(framesOf(await metrics.text(), 'a'), 10);
  });
});
