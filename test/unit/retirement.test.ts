/**
 * Retirement of servers gone for good (src/replication/retirement.ts): the merge rule of the
 * record set (property tests), what the store deletes and keeps, and the decisions of
 * `Retirements` (which servers may be retired, what a new, stale or own record does, what is
 * flooded where) with a fake mesh. Between real peers: test/integration/retire.test.ts.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import pino from 'pino';
import { encodeHlc } from '../../src/clock.ts';
import type { ShoalError } from '../../src/errors.ts';
import { EventBus, type ShoalEvent } from '../../src/events.ts';
import { type LinkMessage, parseMessage } from '../../src/link/messages.ts';
import { Metrics } from '../../src/metrics.ts';
import { mergeRetired, type RetirementMesh, Retirements, winner } from '../../src/replication/retirement.ts';
import { type NodeState, type OpKind, type RetiredServer, Store } from '../../src/store/store.ts';

const SELF = '5e1f0000-0000-4000-8000-000000000001';
const DEAD = 'dead0000-0000-4000-8000-000000000002';
const LIVE = '11fe0000-0000-4000-8000-000000000003';
const OTHER = '07e40000-0000-4000-8000-000000000004';
const T0 = 1_700_000_000_000;

function nid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

function record(id: string, by: string, at: number, name = 'pi'): RetiredServer {
  return { id, name, by, at: new Date(at).toISOString() };
}

// --- The merge rule --------------------------------------------------------------------------

const ids = fc.constantFrom(DEAD, LIVE, OTHER, nid(7));
const anyRecord = fc
  .record({
    id: ids,
    name: fc.constantFrom('', 'pi', 'attic'),
    by: ids,
    at: fc.integer({ min: 0, max: 5 }).map((s) => new Date(T0 + s * 1000).toISOString()),
  })
  .map((r): RetiredServer => ({ ...r })); // Plain objects, as JSON.parse makes them.
const recordSet = fc.array(anyRecord, { maxLength: 8 });

describe('the merge of retired-server records', () => {
  test('is commutative, associative and idempotent, and keeps one record per server', () => {
    fc.assert(
      fc.property(recordSet, recordSet, recordSet, (a, b, c) => {
        assert.deepEqual(mergeRetired(a, b), mergeRetired(b, a));
        assert.deepEqual(mergeRetired(mergeRetired(a, b), c), mergeRetired(a, mergeRetired(b, c)));
        const ab = mergeRetired(a, b);
        assert.deepEqual(mergeRetired(ab, ab), ab);
        assert.equal(new Set(ab.map((r) => r.id)).size, ab.length);
        // Every server retired in either set is retired in the merge.
        for (const r of [...a, ...b]) assert.ok(ab.some((m) => m.id === r.id));
      }),
    );
  });

  test('the winner of two records of a server is the earlier, then the lower retiring server', () => {
    const early = record(DEAD, OTHER, T0);
    const late = record(DEAD, LIVE, T0 + 1);
    assert.equal(winner(early, late), early);
    assert.equal(winner(late, early), early);
    const low = record(DEAD, nid(7), T0);
    assert.equal(winner(early, low), low, `${nid(7)} < ${OTHER}`);
    fc.assert(
      fc.property(anyRecord, anyRecord, (x, other) => {
        const y = { ...other, id: x.id };
        assert.deepEqual(winner(x, y), winner(y, x));
      }),
    );
  });

  test('a link message carries records, and a malformed one is refused', () => {
    const good = { t: 'retired', records: [record(DEAD, SELF, T0)] };
    assert.deepEqual(parseMessage(Buffer.from(JSON.stringify(good))), { ok: true, message: good });
    for (const bad of [
      { t: 'retired', records: [{ ...record(DEAD, SELF, T0), at: 'yesterday' }] },
      { t: 'retired', records: [{ ...record(DEAD, SELF, T0), id: 'not-an-id' }] },
      { t: 'retired' },
    ]) {
      assert.deepEqual(parseMessage(Buffer.from(JSON.stringify(bad))), { ok: false, reason: 'invalid' });
    }
  });
});

// --- The store ---------------------------------------------------------------------------------

function state(id: string, parent: string | null, type: NodeState['type'] = 'Project'): NodeState {
  return { id, type, parent, name: `node ${id.slice(-2)}`, meta: {} };
}

/** Applies ops of `owner` numbered from 1, as replication would. */
function applyAll(store: Store, owner: string, changes: [OpKind, NodeState][]): void {
  store.transaction('NORMAL', () => {
    changes.forEach(([kind, node], i) => {
      const seq = store.ownerState(owner).applied + 1;
      assert.equal(store.applyOp({ owner, seq, hlc: encodeHlc(T0 + i, 0), kind, node }), 'applied');
    });
  });
}

describe('the store of a retired server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-retire-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('deletes its nodes, series, log and place in the version vector, keeps the rest, and remembers', () => {
    const file = join(dir, 'a.db');
    let store = new Store(file);
    applyAll(store, DEAD, [
      ['create', state(DEAD, null, 'Server')],
      ['create', state(nid(1), null)],
      ['create', { ...state(nid(2), nid(1), 'DataPoint'), value: 1 }],
      ['value', { ...state(nid(2), nid(1), 'DataPoint'), value: 2 }],
      ['create', state(nid(3), null)],
      ['delete', state(nid(3), null)],
    ]);
    applyAll(store, LIVE, [
      ['create', state(nid(10), null)],
      ['create', { ...state(nid(11), nid(1), 'DataPoint'), value: 5 }],
    ]);
    assert.equal(store.series(nid(2), 0, Number.MAX_SAFE_INTEGER, 100).length, 2);

    const removed = store.transaction('FULL', () => store.retireServer(record(DEAD, SELF, T0)));
    assert.deepEqual(removed.map((n) => n.id).sort(), [nid(1), nid(2), DEAD].sort(), 'the live nodes');
    for (const id of [DEAD, nid(1), nid(2), nid(3)]) assert.equal(store.node(id), undefined);
    assert.equal(store.series(nid(2), 0, Number.MAX_SAFE_INTEGER, 100).length, 0);
    assert.deepEqual(store.opsAfter(DEAD, 0, 100), []);
    assert.deepEqual(store.versionVector(), { [LIVE]: 2 });
    assert.ok(store.node(nid(10)) && store.node(nid(11)), 'the other owner keeps its nodes');
    assert.equal(store.series(nid(11), 0, Number.MAX_SAFE_INTEGER, 100).length, 1);

    store.close();
    store = new Store(file);
    assert.deepEqual(store.retiredServers(), [record(DEAD, SELF, T0)], 'kept across a restart');
    const replaced = store.transaction('FULL', () => store.retireServer(record(DEAD, LIVE, T0 - 1)));
    assert.deepEqual(replaced, []);
    assert.deepEqual(store.retiredServers(), [record(DEAD, LIVE, T0 - 1)]);
    store.close();
  });
});

// --- Retirements -------------------------------------------------------------------------------

class FakeMesh implements RetirementMesh {
  readonly sent: [string, LinkMessage][] = [];
  readonly retired: string[] = [];
  outcast = false;
  direct: string[] = [LIVE, OTHER];
  readonly states = new Map<string, 'connected' | 'connecting' | 'disconnected'>([
    [LIVE, 'connected'],
    [OTHER, 'connected'],
    [DEAD, 'disconnected'],
  ]);

  send(peerId: string, message: LinkMessage): boolean {
    this.sent.push([peerId, message]);
    return true;
  }
  directPeers(): string[] {
    return this.direct;
  }
  retire(r: RetiredServer): void {
    this.retired.push(r.id);
  }
  retiredSelf(): void {
    this.outcast = true;
  }
  peer(id: string) {
    const state = this.states.get(id);
    return state && { state, name: id === DEAD ? 'attic' : 'peer' };
  }
}

function setUp(store = new Store(':memory:')) {
  const mesh = new FakeMesh();
  const events: ShoalEvent[] = [];
  const bus = new EventBus();
  bus.subscribe((e) => events.push(e));
  const forgotten: string[] = [];
  let sweeps = 0;
  let beaconing = true;
  const errors: string[] = [];
  const retirements = new Retirements({
    selfId: SELF,
    store,
    mesh,
    replication: {
      forgetOwner: (owner) => forgotten.push(owner),
      sweepOrphans: () => sweeps++,
    },
    events: bus,
    metrics: new Metrics({ processMetrics: false }),
    log: pino({ level: 'error' }, { write: (line: string) => errors.push(line) }),
    now: () => T0,
    stopBeacons: () => {
      beaconing = false;
    },
  });
  return {
    store,
    mesh,
    events,
    forgotten,
    sweeps: () => sweeps,
    beaconing: () => beaconing,
    errors,
    retirements,
  };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as ShoalError).code;
  }
  return 'none';
}

describe('Retirements', () => {
  test('retires only a server that is known, not connected and not itself', () => {
    const { retirements, store } = setUp();
    assert.equal(
      code(() => retirements.retire(SELF)),
      'SHOAL_BAD_REQUEST',
    );
    assert.equal(
      code(() => retirements.retire(LIVE)),
      'SHOAL_CONFLICT',
    );
    assert.equal(
      code(() => retirements.retire(nid(99))),
      'SHOAL_NOT_FOUND',
    );
    // Known only by its nodes (the peer table forgot it after its TTL): can be retired.
    applyAll(store, nid(98), [['create', state(nid(98), null, 'Server')]]);
    assert.equal(retirements.retire(nid(98)).retired.id, nid(98));
  });

  test('a retirement deletes here, tells the mesh and replication, events it, and floods it', () => {
    const { retirements, store, mesh, events, forgotten, sweeps } = setUp();
    applyAll(store, DEAD, [
      ['create', state(DEAD, null, 'Server')],
      ['create', state(nid(1), DEAD)],
    ]);
    const { retired, removedNodes } = retirements.retire(DEAD);
    assert.deepEqual(retired, { id: DEAD, name: 'attic', by: SELF, at: new Date(T0).toISOString() });
    assert.equal(removedNodes, 2);
    assert.equal(store.node(nid(1)), undefined);
    assert.deepEqual(mesh.retired, [DEAD]);
    assert.deepEqual(forgotten, [DEAD]);
    assert.equal(sweeps(), 1, 'nodes of ours under its nodes are swept');
    assert.deepEqual(
      events.map((e) => (e.type === 'node' ? `${e.op} ${e.node.id}` : e.type)).sort(),
      [`delete ${DEAD}`, `delete ${nid(1)}`, 'retired'].sort(),
    );
    assert.deepEqual(
      mesh.sent.map(([to]) => to),
      [LIVE, OTHER],
    );
    assert.ok(retirements.has(DEAD));

    // Asked again: the record held, and nothing more happens.
    mesh.sent.length = 0;
    assert.deepEqual(retirements.retire(DEAD), { retired, removedNodes: 0 });
    assert.deepEqual(mesh.sent, []);
  });

  test('a new record from a peer is applied and passed on to the others; a known one stops there', () => {
    const { retirements, mesh, store } = setUp();
    applyAll(store, DEAD, [['create', state(nid(1), null)]]);
    const r = record(DEAD, LIVE, T0);
    retirements.receive(LIVE, [r]);
    assert.equal(store.node(nid(1)), undefined);
    assert.deepEqual(mesh.sent, [[OTHER, { t: 'retired', records: [r] }]]);
    mesh.sent.length = 0;
    retirements.receive(OTHER, [r]);
    retirements.receive(OTHER, [record(DEAD, OTHER, T0 + 5)]);
    assert.deepEqual(mesh.sent, [], 'the same record, or a later one, is not news');
    // An earlier record of the same retirement (made in another half of a partition) wins.
    const earlier = record(DEAD, OTHER, T0 - 5);
    retirements.receive(OTHER, [earlier]);
    assert.deepEqual(mesh.sent, [[LIVE, { t: 'retired', records: [earlier] }]]);
    assert.deepEqual(retirements.list(), [earlier]);
    assert.deepEqual(store.retiredServers(), [earlier]);
  });

  test('a new link hears every record; a record of itself is logged, not applied, and ends its dialling and beacons', () => {
    const { retirements, mesh, store, errors, beaconing } = setUp();
    retirements.linkUp(LIVE);
    assert.deepEqual(mesh.sent, [], 'nothing to say yet');
    applyAll(store, SELF, [['create', state(SELF, null, 'Server')]]);
    retirements.receive(LIVE, [record(SELF, LIVE, T0)]);
    retirements.receive(OTHER, [record(SELF, OTHER, T0)]);
    assert.ok(store.node(SELF), 'a server never deletes its own nodes');
    assert.ok(mesh.outcast, 'it stops dialling the servers that refuse it');
    assert.equal(beaconing(), false, 'and beaconing to them');
    assert.equal(retirements.has(SELF), false);
    assert.equal(errors.length, 1, 'said once');
    assert.match(errors[0]!, /retired this server/);
    retirements.receive(LIVE, [record(DEAD, LIVE, T0)]);
    mesh.sent.length = 0;
    retirements.linkUp(OTHER);
    assert.deepEqual(mesh.sent, [[OTHER, { t: 'retired', records: [record(DEAD, LIVE, T0)] }]]);
  });

  test('the records held are read back at a start, and the mesh told of them', () => {
    const store = new Store(':memory:');
    store.transaction('FULL', () => store.retireServer(record(DEAD, LIVE, T0)));
    const { retirements, mesh } = setUp(store);
    assert.ok(retirements.has(DEAD));
    assert.deepEqual(mesh.retired, [DEAD]);
  });
});
