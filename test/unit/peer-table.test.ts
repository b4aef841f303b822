/**
 * The PeerTable state machine (src/mesh/peer-table.ts) on a fake clock: who dials when, backoff,
 * states and routes, records and their order, leaving, forgetting, static peers, and change
 * events.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Random } from '../../src/clock.ts';
import type { PeerRecord } from '../../src/link/messages.ts';
import {
  type BeaconSighting,
  type DirectLink,
  PeerTable,
  type PeerTableOptions,
  type PeerView,
} from '../../src/mesh/peer-table.ts';
import { computeRoutes } from '../../src/mesh/routes.ts';
import { FakeClock, scriptedRandom, seededRandom } from '../support/fake-clock.ts';

/** Ids are compared as strings: LOW < SELF < HIGH, and A..D above SELF. */
const SELF = '50000000-0000-4000-8000-000000000000';
const LOW = '10000000-0000-4000-8000-000000000000';
const HIGH = '90000000-0000-4000-8000-000000000000';
const A = 'a0000000-0000-4000-8000-000000000000';
const B = 'b0000000-0000-4000-8000-000000000000';
const C = 'c0000000-0000-4000-8000-000000000000';

const OPTIONS: PeerTableOptions = {
  dialGraceMs: 1000,
  reconnectBaseMs: 100,
  reconnectMaxMs: 10_000,
  reconnectJitter: 0.3,
  peerTtlMs: 60_000,
  gossipDial: true,
  staticPeers: [],
};

function setup(options: Partial<PeerTableOptions> = {}, random: Random = scriptedRandom(0.5)) {
  const clock = new FakeClock();
  const table = new PeerTable({ clock, random, selfId: SELF }, { ...OPTIONS, ...options });
  const changes: PeerView[] = [];
  table.onChange((view) => changes.push(view));
  const beacon = (id: string, fields: Partial<BeaconSighting> = {}): void =>
    table.heardBeacon({
      id,
      generation: 1,
      kind: 'hello',
      address: `10.0.0.${id.charCodeAt(0)}`,
      port: 7420,
      name: `name-${id.slice(0, 1)}`,
      version: '0.1.0',
      ...fields,
    });
  const link = (remoteAddress = '10.0.0.9'): DirectLink => ({
    rttMs: 3,
    lastRxAt: clock.now(),
    remoteAddress,
  });
  const state = (id: string) => table.get(id)?.state;
  const due = () => table.dueDials().map((p) => p.key);
  /** Milliseconds until the table next wants to run. */
  const wait = () => {
    const at = table.nextWakeAt();
    return at === undefined ? undefined : at - clock.now();
  };
  return { clock, table, changes, beacon, link, state, due, wait };
}

function record(id: string, fields: Partial<PeerRecord> = {}): PeerRecord {
  return {
    id,
    generation: 1,
    seq: 1,
    name: `rec-${id.slice(0, 1)}`,
    addresses: ['10.0.1.1'],
    port: 7420,
    model: 'Raspberry Pi 5',
    version: '0.1.0',
    os: 'Linux',
    platform: 'LINUX',
    settings: {},
    links: [],
    ...fields,
  };
}

describe('PeerTable: who dials when', () => {
  test('the lower id dials at once', () => {
    const t = setup();
    t.beacon(HIGH, { address: '10.0.0.20', port: 7500 });
    assert.deepEqual(t.table.dueDials(), [{ key: HIGH, address: '10.0.0.20', port: 7500 }]);
    assert.equal(t.wait(), 0);
  });

  test('the higher id waits dialGraceMs for the other to dial, and more beacons do not push it back', () => {
    const t = setup();
    t.beacon(LOW);
    assert.deepEqual(t.due(), []);
    assert.equal(t.wait(), 1000);
    t.clock.advance(600);
    t.beacon(LOW);
    assert.equal(t.wait(), 400);
    t.clock.advance(399);
    assert.deepEqual(t.due(), []);
    t.clock.advance(1);
    assert.deepEqual(t.due(), [LOW]);
  });

  test('a dial under way is not planned again, and a freshly heard peer shows "connecting"', () => {
    const t = setup();
    t.beacon(HIGH);
    assert.equal(t.state(HIGH), 'disconnected');
    t.table.dialStarted(HIGH);
    assert.equal(t.state(HIGH), 'connecting');
    assert.deepEqual(t.due(), []);
    t.beacon(HIGH);
    assert.deepEqual(t.due(), [], 'a beacon during the dial does not plan a second one');
  });

  test('failed dials back off exponentially (jitter 0.5 → factor 1): 200, 400, 800 … capped at 10 s', () => {
    const t = setup();
    t.beacon(HIGH);
    const waits: (number | undefined)[] = [];
    for (let i = 0; i < 10; i++) {
      assert.deepEqual(t.due(), [HIGH]);
      t.table.dialStarted(HIGH);
      t.table.dialEnded(HIGH);
      waits.push(t.wait());
      t.clock.advance(t.wait()!);
    }
    assert.deepEqual(waits, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000]);
  });

  test('failed dial delays stay within base·2ⁿ·(1 ± jitter), capped, for any random sequence', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const t = setup({ peerTtlMs: 24 * 3600_000 }, seededRandom(seed));
        t.beacon(HIGH);
        for (let n = 1; n <= 12; n++) {
          t.table.dialStarted(HIGH);
          t.table.dialEnded(HIGH);
          const raw = Math.min(10_000, 100 * 2 ** n);
          const wait = t.wait()!;
          assert.ok(
            wait >= Math.floor(raw * 0.7) && wait <= Math.ceil(raw * 1.3),
            `attempt ${n}: ${wait} ms`,
          );
          t.clock.advance(wait);
        }
      }),
      { numRuns: 50 },
    );
  });

  test('redials rotate through the known addresses', () => {
    const t = setup();
    t.beacon(HIGH, { address: '10.0.0.1' });
    t.table.learnedRecord(record(HIGH, { addresses: ['10.0.0.1', '192.168.5.1'] }));
    const tried: string[] = [];
    for (let i = 0; i < 4; i++) {
      const [plan] = t.table.dueDials();
      tried.push(plan!.address);
      t.table.dialStarted(HIGH);
      t.table.dialEnded(HIGH);
      t.clock.advance(t.wait()!);
    }
    assert.deepEqual(tried, ['10.0.0.1', '192.168.5.1', '10.0.0.1', '192.168.5.1']);
  });

  test('a peer known by no address or port is not dialled', () => {
    const t = setup();
    t.table.linkUp(HIGH, 1, t.link(''));
    t.table.linkDown(HIGH);
    t.clock.advance(100_000);
    assert.deepEqual(t.due(), []);
  });
});

describe('PeerTable: links and states', () => {
  test('link up: connected, route direct, with the link’s RTT and address', () => {
    const t = setup();
    t.beacon(HIGH);
    t.table.dialStarted(HIGH);
    t.table.dialEnded(HIGH, HIGH);
    t.table.linkUp(HIGH, 1, t.link('10.0.0.77'));
    const view = t.table.get(HIGH)!;
    assert.equal(view.state, 'connected');
    assert.equal(view.route, 'direct');
    assert.equal(view.rttMs, 3);
    assert.equal(view.address, '10.0.0.77');
    assert.equal(view.lastSeen, new Date(t.clock.now()).toISOString());
    assert.deepEqual(t.table.directIds(), [HIGH]);
    assert.equal(t.table.knows(HIGH, 1), true);
    assert.equal(t.table.knows(HIGH, 2), false, 'a newer generation is news');
    assert.deepEqual(t.due(), []);
  });

  test('link down: disconnected and redialled after a backoff, "disconnected" (not "connecting") while redialling', () => {
    const t = setup();
    t.beacon(HIGH);
    t.table.linkUp(HIGH, 1, t.link());
    t.clock.advance(5000);
    t.table.linkDown(HIGH);
    assert.equal(t.state(HIGH), 'disconnected');
    assert.equal(t.table.get(HIGH)!.route, null);
    assert.equal(t.table.knows(HIGH, 1), false);
    assert.equal(t.wait(), 100, 'backoff(0) = base');
    t.clock.advance(100);
    assert.deepEqual(t.due(), [HIGH]);
    for (let i = 0; i < 5; i++) {
      t.table.dialStarted(HIGH);
      assert.equal(t.state(HIGH), 'disconnected', `redial ${i + 1} of a silent peer`);
      t.table.dialEnded(HIGH);
      t.clock.advance(t.wait()!);
    }
  });

  test('after link down, a peer heard from again shows "connecting" while dialled', () => {
    const t = setup();
    t.beacon(HIGH);
    t.table.linkUp(HIGH, 1, t.link());
    t.table.linkDown(HIGH);
    t.beacon(HIGH);
    t.table.dialStarted(HIGH);
    assert.equal(t.state(HIGH), 'connecting');
  });

  test('a newer record (not only a beacon) also counts as heard from', () => {
    const t = setup();
    t.table.linkUp(HIGH, 1, t.link());
    t.table.linkDown(HIGH);
    t.table.learnedRecord(record(HIGH, { seq: 9 }));
    t.table.dialStarted(HIGH);
    assert.equal(t.state(HIGH), 'connecting');
  });

  test('a beacon cuts a long backoff short: the lower id dials at once, the higher after the grace', () => {
    for (const [id, expected] of [
      [HIGH, 0],
      [LOW, 1000],
    ] as const) {
      const t = setup();
      t.beacon(id);
      t.table.linkUp(id, 1, t.link());
      t.table.linkDown(id);
      for (let i = 0; i < 8; i++) {
        t.clock.advance(t.wait()!);
        t.table.dialStarted(id);
        t.table.dialEnded(id);
      }
      assert.ok(t.wait()! >= 5000, `a long wait first (${t.wait()} ms)`);
      t.beacon(id);
      assert.equal(t.wait(), expected, id);
    }
  });

  test('a dial that links resets the backoff', () => {
    const t = setup();
    t.beacon(HIGH);
    for (let i = 0; i < 5; i++) {
      t.table.dialStarted(HIGH);
      t.table.dialEnded(HIGH);
      t.clock.advance(t.wait()!);
    }
    t.table.dialStarted(HIGH);
    t.table.dialEnded(HIGH, HIGH);
    t.table.linkUp(HIGH, 1, t.link());
    t.table.linkDown(HIGH);
    assert.equal(t.wait(), 100);
  });

  test('a peer linked at a newer generation is no longer "left"', () => {
    const t = setup();
    t.table.learnedRecord(record(HIGH, { left: true }));
    t.table.linkUp(HIGH, 2, t.link());
    t.table.linkDown(HIGH);
    t.clock.advance(100);
    assert.deepEqual(t.due(), [HIGH]);
  });
});

describe('PeerTable: records', () => {
  test('a newer record is taken, an older or equal one ignored; records of self are ignored', () => {
    const t = setup();
    assert.equal(t.table.learnedRecord(record(HIGH, { generation: 1, seq: 5, name: 'five' })), true);
    assert.equal(t.table.learnedRecord(record(HIGH, { generation: 1, seq: 4, name: 'four' })), false);
    assert.equal(t.table.learnedRecord(record(HIGH, { generation: 1, seq: 5, name: 'again' })), false);
    assert.equal(t.table.get(HIGH)!.name, 'five');
    assert.equal(t.table.learnedRecord(record(HIGH, { generation: 2, seq: 0, name: 'restarted' })), true);
    assert.equal(t.table.get(HIGH)!.name, 'restarted');
    assert.equal(t.table.learnedRecord(record(SELF)), false);
    assert.equal(t.table.get(SELF), undefined);
  });

  test('the view shows the record’s metadata, the beacon’s until a record arrives', () => {
    const t = setup();
    t.beacon(HIGH, { name: 'from-beacon', version: '0.0.9' });
    let view = t.table.get(HIGH)!;
    assert.equal(view.name, 'from-beacon');
    assert.equal(view.version, '0.0.9');
    assert.equal(view.model, 'unknown');
    t.table.learnedRecord(record(HIGH, { name: 'from-record', model: 'Pi 5', settings: { a: 1 } }));
    view = t.table.get(HIGH)!;
    assert.equal(view.name, 'from-record');
    assert.equal(view.model, 'Pi 5');
    assert.deepEqual(view.settings, { a: 1 });
    assert.equal(view.platform, 'LINUX');
  });

  test('property: any order of one peer’s records ends with the newest; true exactly for each new maximum', () => {
    const versions = fc
      .uniqueArray(fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 6 })), {
        minLength: 1,
        maxLength: 15,
        selector: ([g, s]) => `${g}/${s}`,
      })
      .chain((vs) => fc.shuffledSubarray(vs, { minLength: vs.length, maxLength: vs.length }));
    fc.assert(
      fc.property(versions, (order) => {
        const t = setup();
        let best: [number, number] = [-1, -1];
        for (const [generation, seq] of order) {
          const newer = generation > best[0] || (generation === best[0] && seq > best[1]);
          const taken = t.table.learnedRecord(
            record(HIGH, { generation, seq, name: `v${generation}.${seq}` }),
          );
          assert.equal(taken, newer, `record ${generation}.${seq} after ${best.join('.')}`);
          if (newer) best = [generation, seq];
        }
        assert.equal(t.table.get(HIGH)!.name, `v${best[0]}.${best[1]}`);
        assert.deepEqual(
          t.table.records().map((r) => [r.generation, r.seq]),
          [best],
        );
      }),
      { numRuns: 200 },
    );
  });

  test('gossipDial: a peer learned only by record is dialled when on, not when off', () => {
    const on = setup({ gossipDial: true });
    on.table.learnedRecord(record(HIGH));
    assert.deepEqual(on.due(), [HIGH]);
    const off = setup({ gossipDial: false });
    off.table.learnedRecord(record(HIGH));
    off.clock.advance(10_000);
    assert.deepEqual(off.due(), []);
    off.beacon(HIGH);
    assert.deepEqual(off.due(), [HIGH], 'a beacon makes it dialable');
  });
});

describe('PeerTable: leaving', () => {
  test('a left record: disconnected at once, never dialled again at that generation', () => {
    const t = setup({ peerTtlMs: 24 * 3600_000 });
    t.beacon(HIGH);
    t.table.linkUp(HIGH, 1, t.link());
    t.table.learnedRecord(record(HIGH, { seq: 2, left: true }));
    assert.equal(t.state(HIGH), 'connected', 'while its link is still up');
    t.table.linkDown(HIGH);
    assert.equal(t.state(HIGH), 'disconnected');
    t.beacon(HIGH, { generation: 1 });
    t.clock.advance(3600_000);
    assert.deepEqual(t.due(), []);
    t.table.dialStarted(HIGH);
    assert.equal(t.state(HIGH), 'disconnected', 'never "connecting"');
    t.table.dialEnded(HIGH);
    const wait = t.wait();
    assert.ok(wait === undefined || wait > 3600_000, 'only the TTL is left to wake for');
  });

  test('after leaving, a newer generation by beacon or record makes it dialable again', () => {
    const byBeacon = setup();
    byBeacon.table.learnedRecord(record(HIGH, { left: true }));
    byBeacon.beacon(HIGH, { generation: 2 });
    assert.deepEqual(byBeacon.due(), [HIGH]);

    const byRecord = setup();
    byRecord.table.learnedRecord(record(HIGH, { left: true }));
    byRecord.table.learnedRecord(record(HIGH, { generation: 2, seq: 0 }));
    assert.deepEqual(byRecord.due(), [HIGH]);
  });

  test('a bye beacon marks the peer as left', () => {
    const t = setup();
    t.beacon(HIGH);
    t.beacon(HIGH, { kind: 'bye' });
    assert.deepEqual(t.due(), []);
    t.clock.advance(10_000);
    assert.deepEqual(t.due(), []);
  });

  test('a left record does not touch a dial in flight, whose end is still taken', () => {
    const t = setup();
    t.beacon(HIGH);
    t.table.dialStarted(HIGH);
    t.table.learnedRecord(record(HIGH, { left: true }));
    assert.equal(t.state(HIGH), 'disconnected');
    assert.deepEqual(t.due(), [], 'still dialing: not planned again');
    t.table.dialEnded(HIGH);
    t.clock.advance(100_000);
    assert.deepEqual(t.due(), [], 'and not redialled after it failed');
  });
});

describe('PeerTable: routes through relays', () => {
  test('a peer reached through a linked one is connected with that first hop, and loses it with the link', () => {
    const t = setup();
    t.table.linkUp(A, 1, t.link());
    t.table.learnedRecord(record(A, { links: [SELF, B] }));
    t.table.learnedRecord(record(B, { links: [A] }));
    assert.equal(t.state(B), 'connected');
    assert.equal(t.table.get(B)!.route, A);
    assert.equal(t.table.get(B)!.lastSeen, new Date(t.clock.now()).toISOString());

    t.table.learnedRecord(record(C, { links: [B] }));
    assert.equal(t.state(C), 'disconnected', 'B does not list C: the edge does not count');
    t.table.learnedRecord(record(B, { seq: 2, links: [A, C] }));
    assert.equal(t.table.get(C)!.route, A, 'two hops away, still through A');

    t.table.linkDown(A);
    assert.equal(t.state(B), 'disconnected');
    assert.equal(t.state(C), 'disconnected');
    assert.equal(t.table.get(B)!.route, null);
  });

  test('a relay that drops the edge, or a peer that left, is no longer a route', () => {
    const t = setup();
    t.table.linkUp(A, 1, t.link());
    t.table.learnedRecord(record(A, { links: [B] }));
    t.table.learnedRecord(record(B, { links: [A] }));
    assert.equal(t.table.get(B)!.route, A);
    t.table.learnedRecord(record(A, { seq: 2, links: [] }));
    assert.equal(t.state(B), 'disconnected');
    t.table.learnedRecord(record(A, { seq: 3, links: [B] }));
    assert.equal(t.state(B), 'connected');
    t.table.learnedRecord(record(B, { seq: 2, links: [A], left: true }));
    assert.equal(t.state(B), 'disconnected');
  });

  test('a direct link wins over a relayed route', () => {
    const t = setup();
    t.table.linkUp(A, 1, t.link());
    t.table.learnedRecord(record(A, { links: [B] }));
    t.table.learnedRecord(record(B, { links: [A] }));
    t.table.linkUp(B, 1, t.link());
    assert.equal(t.table.get(B)!.route, 'direct');
  });

  test('a record that only carries new RTTs leaves the link state as it was; other links move it', () => {
    const t = setup();
    t.table.linkUp(A, 1, t.link());
    t.table.learnedRecord(record(A, { links: [B, SELF] }));
    t.table.learnedRecord(record(B, { links: [A] }));
    const before = t.table.linkVersion;
    t.table.learnedRecord(record(A, { seq: 2, links: [B, SELF], rtts: { [B]: 4 } }));
    assert.equal(t.table.linkVersion, before);
    assert.equal(t.table.get(B)!.route, A);
    t.table.learnedRecord(record(A, { seq: 3, links: [SELF] }));
    assert.ok(t.table.linkVersion > before);
    assert.equal(t.table.get(B)!.route, null);
  });

  test('property: routes kept across changes are the routes worked out afresh, and every change of the link state moves linkVersion', () => {
    const peers = [A, B, C, HIGH];
    const change = fc.oneof(
      fc.record({ kind: fc.constant('up' as const), id: fc.constantFrom(...peers) }),
      fc.record({ kind: fc.constant('down' as const), id: fc.constantFrom(...peers) }),
      fc.record({
        kind: fc.constant('record' as const),
        id: fc.constantFrom(...peers),
        links: fc.subarray([SELF, ...peers]),
        left: fc.boolean(),
        rtt: fc.nat(20),
      }),
      fc.record({ kind: fc.constant('remove' as const), id: fc.constantFrom(...peers) }),
    );
    fc.assert(
      fc.property(fc.array(change, { maxLength: 40 }), (changes) => {
        const t = setup();
        const seqs = new Map<string, number>();
        // What routes and `linked` answers are worked out from: it may not move unseen.
        const linkState = (): string =>
          JSON.stringify([
            [...t.table.directIds()].sort(),
            peers.map((id) => {
              const r = t.table.get(id) && t.table.record(id);
              return r ? [r.links, r.left === true] : null;
            }),
          ]);
        for (const c of changes) {
          const before = { state: linkState(), version: t.table.linkVersion };
          if (c.kind === 'up') t.table.linkUp(c.id, 1, t.link());
          else if (c.kind === 'down') t.table.linkDown(c.id);
          else if (c.kind === 'remove') t.table.remove(c.id);
          else {
            const seq = (seqs.get(c.id) ?? 0) + 1;
            seqs.set(c.id, seq);
            const links = c.links.filter((id) => id !== c.id).sort();
            t.table.learnedRecord(record(c.id, { seq, links, left: c.left, rtts: { [SELF]: c.rtt } }));
          }
          if (linkState() !== before.state) {
            assert.ok(t.table.linkVersion > before.version, `linkVersion after ${JSON.stringify(c)}`);
          }
          const records = new Map<string, PeerRecord>();
          for (const id of peers) {
            const r = t.table.record(id);
            if (r && t.table.get(id)) records.set(id, r);
          }
          const fresh = computeRoutes(SELF, t.table.directIds(), records);
          for (const id of peers) {
            const view = t.table.get(id);
            if (!view) continue;
            const direct = t.table.directIds().includes(id);
            const hop = fresh.get(id);
            const expected = direct ? 'direct' : hop !== undefined && !records.get(id)?.left ? hop : null;
            assert.equal(view.route, expected, `${id} after ${JSON.stringify(c)}`);
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('PeerTable: formed (when a restarted server has heard from everyone it can reach)', () => {
  test('alone: no; a peer reached only through another: no; every peer up linked directly: yes', () => {
    const t = setup();
    assert.equal(t.table.formed(), false, 'nobody linked');
    t.table.linkUp(A, 1, t.link());
    assert.equal(t.table.formed(), true);
    t.table.learnedRecord(record(A, { links: [SELF, B] }));
    t.table.learnedRecord(record(B, { links: [A] }));
    assert.equal(t.table.formed(), false, 'B is reached through A only');
    t.table.linkUp(B, 1, t.link());
    assert.equal(t.table.formed(), true);
    t.table.learnedRecord(record(C, { links: [] }));
    assert.equal(t.table.formed(), false, 'C was just heard of: it is about to be dialled');
    t.table.dialStarted(C);
    t.table.dialEnded(C);
    assert.equal(t.table.formed(), true, 'the dial failed: C is down, nothing to wait for');
    t.beacon(C);
    assert.equal(t.table.formed(), false, 'C beaconed: it is up');
    t.table.linkUp(C, 1, t.link());
    assert.equal(t.table.formed(), true);
    t.table.linkDown(C);
    assert.equal(t.table.formed(), true, 'C went silent: down');
    const D = 'd0000000-0000-4000-8000-000000000000';
    t.table.learnedRecord(record(D, { addresses: [] }));
    assert.equal(t.table.formed(), true, 'D cannot be dialled (no address): nothing to wait for');
  });

  test('a static peer not tried yet, or in its first dial, is waited for; after a failed dial it is not', () => {
    const t = setup({ staticPeers: [{ host: 'nas.lan', port: 7420 }] });
    t.table.linkUp(A, 1, t.link());
    assert.equal(t.table.formed(), false, 'the static peer may be one nothing else reaches');
    t.table.dialStarted('static:nas.lan:7420');
    assert.equal(t.table.formed(), false);
    t.table.dialEnded('static:nas.lan:7420');
    assert.equal(t.table.formed(), true);
  });
});

describe('PeerTable: a server replaced at the same address', () => {
  test('a dial of the old id that links to another is a failed dial of the old id, not redialled at once', () => {
    const t = setup();
    t.beacon(HIGH);
    assert.deepEqual(t.due(), [HIGH]);
    t.table.dialStarted(HIGH);
    t.table.linkUp(LOW, 1, t.link());
    t.table.dialEnded(HIGH, LOW); // The address now belongs to LOW.
    assert.deepEqual(t.due(), [], 'backoff, not a dial on every pump');
    assert.equal(t.state(HIGH), 'disconnected');
    assert.equal(t.table.formed(), true, 'nothing to wait for: HIGH is not up');
    t.clock.advance(OPTIONS.reconnectMaxMs);
    assert.deepEqual(t.due(), [HIGH], 'tried again later, with backoff');
  });
});

describe('PeerTable: forgetting', () => {
  test('a peer disconnected for the TTL is forgotten; not-newer records of it are ignored after', () => {
    const t = setup();
    t.table.linkUp(HIGH, 1, t.link());
    t.table.learnedRecord(record(HIGH, { seq: 5, left: true }));
    t.table.linkDown(HIGH);
    assert.equal(t.wait(), 60_000, 'the table wakes for the expiry');
    t.clock.advance(59_999);
    t.table.expire();
    assert.ok(t.table.get(HIGH), 'not yet');
    t.clock.advance(1);
    t.table.expire();
    assert.equal(t.table.get(HIGH), undefined);
    assert.deepEqual(t.table.views(), []);
    assert.equal(
      t.table.learnedRecord(record(HIGH, { seq: 5, left: true })),
      false,
      'gossip does not bring it back',
    );
    assert.equal(t.table.learnedRecord(record(HIGH, { seq: 4 })), false);
    assert.equal(t.table.get(HIGH), undefined);
    assert.equal(t.table.learnedRecord(record(HIGH, { seq: 6 })), true, 'a newer record does');
    assert.ok(t.table.get(HIGH));
  });

  test('a beacon brings a forgotten peer back', () => {
    const t = setup();
    t.table.learnedRecord(record(HIGH, { left: true }));
    t.clock.advance(60_000);
    t.table.expire();
    assert.equal(t.table.get(HIGH), undefined);
    t.beacon(HIGH, { generation: 2 });
    assert.equal(t.state(HIGH), 'disconnected');
    assert.deepEqual(t.due(), [HIGH]);
  });

  test('connected peers, direct or relayed, are never forgotten', () => {
    const t = setup();
    t.table.linkUp(A, 1, t.link());
    t.table.learnedRecord(record(A, { links: [B] }));
    t.table.learnedRecord(record(B, { links: [A] }));
    t.clock.advance(10 * 60_000);
    t.table.expire();
    assert.equal(t.state(A), 'connected');
    assert.equal(t.state(B), 'connected');
  });

  test('a peer heard once and never reached is forgotten after the TTL, although it is redialled', () => {
    const t = setup();
    t.beacon(HIGH);
    for (let elapsed = 0; elapsed <= 61_000; ) {
      if (t.due().includes(HIGH)) {
        t.table.dialStarted(HIGH);
        t.table.dialEnded(HIGH);
      }
      t.table.expire();
      const step = Math.min(t.wait() ?? 1000, 1000);
      t.clock.advance(step);
      elapsed += step;
    }
    t.table.expire();
    assert.equal(t.table.get(HIGH), undefined);
  });
});

describe('PeerTable: static peers', () => {
  const STATIC = { host: 'nas.lan', port: 7420 };
  const KEY = 'static:nas.lan:7420';

  test('a static peer is dialled at once, by address, and forever with capped backoff', () => {
    const t = setup({ staticPeers: [STATIC] });
    assert.deepEqual(t.table.dueDials(), [{ key: KEY, address: 'nas.lan', port: 7420 }]);
    for (let i = 0; i < 100; i++) {
      t.table.dialStarted(KEY);
      assert.deepEqual(t.due(), [], 'not while its dial runs');
      t.table.dialEnded(KEY);
      assert.ok(t.wait()! <= 10_000);
      t.clock.advance(t.wait()!);
      t.table.expire();
      assert.deepEqual(t.due(), [KEY], `still dialled after ${i + 1} failures`);
    }
  });

  test('a static peer is bound to the id it links to: not dialled while linked, again when lost', () => {
    const t = setup({ staticPeers: [STATIC] });
    t.table.dialStarted(KEY);
    t.table.dialEnded(KEY, HIGH);
    t.table.linkUp(HIGH, 1, t.link('10.0.0.50'));
    t.clock.advance(100_000);
    assert.deepEqual(t.due(), []);
    t.table.linkDown(HIGH);
    assert.ok(t.due().includes(KEY));
  });

  test('the peer a static address is bound to is never forgotten', () => {
    const t = setup({ staticPeers: [STATIC] });
    t.table.dialStarted(KEY);
    t.table.dialEnded(KEY, HIGH);
    t.table.linkUp(HIGH, 1, t.link());
    t.table.learnedRecord(record(HIGH, { seq: 2, left: true }));
    t.table.linkDown(HIGH);
    t.clock.advance(10 * 60_000);
    t.table.expire();
    assert.ok(t.table.get(HIGH));
  });
});

describe('PeerTable: change events', () => {
  test('a newly heard peer is announced once; the same beacon again announces nothing', () => {
    const t = setup();
    t.beacon(LOW);
    assert.equal(t.changes.length, 1);
    assert.equal(t.changes[0]!.id, LOW);
    assert.equal(t.changes[0]!.state, 'disconnected');
    t.clock.advance(100);
    t.beacon(LOW);
    t.table.dueDials();
    t.table.nextWakeAt();
    t.table.expire();
    assert.equal(t.changes.length, 1);
  });

  test('state and route changes are announced', () => {
    const t = setup();
    t.beacon(HIGH);
    t.table.dialStarted(HIGH);
    t.table.linkUp(HIGH, 1, t.link());
    t.table.linkDown(HIGH);
    assert.deepEqual(
      t.changes.map((v) => [v.state, v.route]),
      [
        ['disconnected', null],
        ['connecting', null],
        ['connected', 'direct'],
        ['disconnected', null],
      ],
    );
    assert.equal(t.changes.at(-1)!.since, new Date(t.clock.now()).toISOString());
  });

  test('metadata changes are announced: a new name, port or record', () => {
    const t = setup();
    t.table.linkUp(HIGH, 1, t.link());
    const before = t.changes.length;
    t.beacon(HIGH, { name: 'renamed' });
    assert.equal(t.changes.length, before + 1);
    assert.equal(t.changes.at(-1)!.name, 'renamed');
    t.beacon(HIGH, { name: 'renamed', port: 8000 });
    assert.equal(t.changes.length, before + 2);
    assert.equal(t.changes.at(-1)!.port, 8000);
    t.table.learnedRecord(record(HIGH, { name: 'by-record', port: 8000 }));
    assert.equal(t.changes.length, before + 3);
    assert.equal(t.changes.at(-1)!.name, 'by-record');
    t.table.learnedRecord(record(HIGH, { name: 'by-record', port: 8000 }));
    assert.equal(t.changes.length, before + 3, 'an ignored (not newer) record changes nothing');
  });

  test('a record that only brings new RTTs announces nothing; one with other links or settings does', () => {
    const t = setup();
    t.table.linkUp(HIGH, 1, t.link());
    t.table.learnedRecord(record(HIGH, { links: [SELF], rtts: { [SELF]: 0.3 } }));
    const before = t.changes.length;
    t.table.learnedRecord(record(HIGH, { seq: 2, links: [SELF], rtts: { [SELF]: 48 } }));
    t.table.learnedRecord(record(HIGH, { seq: 3, links: [SELF], rtts: { [SELF]: 0.4 } }));
    assert.equal(t.changes.length, before);
    t.table.learnedRecord(record(HIGH, { seq: 4, links: [A, SELF] }));
    assert.equal(t.changes.length, before + 1, 'a new link of the peer (the mesh graph shows it)');
    t.table.learnedRecord(record(HIGH, { seq: 5, links: [A, SELF], settings: { room: 'attic' } }));
    assert.equal(t.changes.length, before + 2);
    assert.deepEqual(t.changes.at(-1)!.settings, { room: 'attic' });
  });

  test('a change of one peer announces only that peer', () => {
    const t = setup();
    t.beacon(HIGH);
    t.beacon(A);
    const before = t.changes.length;
    t.table.linkUp(A, 1, t.link());
    assert.deepEqual(
      t.changes.slice(before).map((v) => v.id),
      [A],
    );
  });

  test('views are sorted by name', () => {
    const t = setup();
    t.beacon(HIGH, { name: 'zeta' });
    t.beacon(A, { name: 'alpha' });
    t.beacon(B, { name: 'mu' });
    assert.deepEqual(
      t.table.views().map((v) => v.name),
      ['alpha', 'mu', 'zeta'],
    );
  });
});

describe('PeerTable: settled (when beacons may slow down)', () => {
  test('alone: no; every known peer connected: yes; one gone silent: no; gone with a bye: yes', () => {
    const t = setup();
    assert.equal(t.table.settled(), false, 'a peer alone looks for company');
    t.beacon(HIGH);
    assert.equal(t.table.settled(), false, 'heard of, not linked yet');
    t.table.linkUp(HIGH, 1, t.link());
    t.beacon(LOW);
    t.table.linkUp(LOW, 1, t.link());
    assert.equal(t.table.settled(), true);
    t.table.linkDown(HIGH);
    assert.equal(t.table.settled(), false, 'a peer went missing');
    t.beacon(HIGH, { kind: 'bye' });
    assert.equal(t.table.settled(), true, 'a peer that said goodbye is not missed');
  });
});

describe('PeerTable: across a restart (saved, then remembered)', () => {
  test('what is saved comes back disconnected, with its metadata, dialled without holding up formed', () => {
    const before = setup();
    before.table.linkUp(HIGH, 1, before.link('10.0.0.9'));
    before.table.learnedRecord(record(HIGH, { seq: 3, addresses: ['10.0.1.1'] }));
    before.beacon(A); // Heard by beacon only: no record, nothing to keep.
    before.clock.advance(5000);
    const saved = before.table.saved();
    assert.deepEqual(
      saved.map((s) => [s.record.id, s.port, s.addresses]),
      [[HIGH, 7420, ['10.0.0.9', '10.0.1.1']]],
    );

    const after = setup();
    after.clock.advance(60_000);
    for (const s of saved) after.table.remember(s);
    const view = after.table.get(HIGH)!;
    assert.deepEqual([view.state, view.name, view.model], ['disconnected', 'rec-9', 'Raspberry Pi 5']);
    assert.equal(
      view.since,
      new Date(saved[0]!.lastSeen).toISOString(),
      'disconnected since last heard from',
    );
    assert.deepEqual(after.due(), [HIGH], 'dialled at its last address');
    after.table.dialStarted(HIGH);
    assert.equal(after.state(HIGH), 'disconnected', 'not "connecting": not heard from since');
    assert.equal(after.table.formed(), false, 'nothing linked yet');
    after.table.linkUp(LOW, 1, after.link());
    assert.equal(after.table.formed(), true, 'a remembered peer does not hold up formed');
    // A record no newer than the remembered one is not news; a newer one is.
    assert.equal(after.table.learnedRecord(record(HIGH, { seq: 3 })), false);
    assert.equal(after.table.learnedRecord(record(HIGH, { seq: 4 })), true);
  });

  test('a remembered peer is forgotten once gone for the TTL, counted from when it was last heard from', () => {
    const before = setup();
    before.table.linkUp(HIGH, 1, before.link());
    before.table.learnedRecord(record(HIGH));
    const [saved] = before.table.saved();
    const after = setup();
    after.clock.advance(OPTIONS.peerTtlMs - 1000);
    after.table.remember(saved!);
    after.table.expire();
    assert.ok(after.table.get(HIGH), 'not yet');
    after.clock.advance(1000);
    after.table.expire();
    assert.equal(after.table.get(HIGH), undefined);
  });
});
