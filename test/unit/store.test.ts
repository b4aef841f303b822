/**
 * The SQLite store (src/store/store.ts): ops of an owner applied strictly in sequence, the version
 * vector and log, what `nodes()` shows of a tree with deletes and missing parents, snapshots
 * (`replaceOwner`), compaction, tombstone collection, data point series and their retention, and
 * the schema version of a database file.
 */

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { encodeHlc } from '../../src/clock.ts';
import { ShoalError } from '../../src/errors.ts';
import type { NodeType } from '../../src/store/node-types.ts';
import { MIGRATIONS } from '../../src/store/schema.ts';
import {
  apiNodeOf,
  type NodeState,
  type Op,
  type OpKind,
  Store,
  type StoredNode,
  toApi,
} from '../../src/store/store.ts';

const T0 = 1_700_000_000_000;
const OWNER_A = 'aaaaaaaa-0000-4000-8000-000000000001';
const OWNER_B = 'bbbbbbbb-0000-4000-8000-000000000002';
const OWNER_C = 'cccccccc-0000-4000-8000-000000000003';
const OWNERS = [OWNER_A, OWNER_B, OWNER_C];

/** A UUID-shaped node id from a small number, so failures read well. */

/** How far an owner is applied, and where its log starts (ownerState without the stamp). */
function held(store: Store, owner: string): { applied: number; logFloor: number } {
  const { applied, logFloor } = store.ownerState(owner);
  return { applied, logFloor };
}

function nid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

function state(id: string, parent: string | null, extra: Partial<NodeState> = {}): NodeState {
  return { id, type: 'Project', parent, name: `node ${id.slice(-4)}`, meta: {}, ...extra };
}

function op(owner: string, seq: number, kind: OpKind, node: NodeState, wall = T0 + seq): Op {
  return { owner, seq, hlc: encodeHlc(wall, 0), kind, node };
}

/** Writes ops of several owners, numbering each owner's in turn. */
class Writer {
  readonly #seq = new Map<string, number>();
  constructor(readonly store: Store) {}

  write(owner: string, kind: OpKind, node: NodeState, wall?: number): Op {
    const seq = (this.#seq.get(owner) ?? 0) + 1;
    this.#seq.set(owner, seq);
    const o = op(owner, seq, kind, node, wall);
    assert.equal(
      this.store.transaction('NORMAL', () => this.store.applyOp(o)),
      'applied',
    );
    return o;
  }
}

const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function tempFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-store-'));
  tempDirs.push(dir);
  return join(dir, 'data', 'shoal.db');
}

describe('Store: applying ops', () => {
  test('applied, then duplicate at or below applied, gap past the next seq', () => {
    const store = new Store(':memory:');
    const a1 = op(OWNER_A, 1, 'create', state(nid(1), null));
    const a2 = op(OWNER_A, 2, 'update', state(nid(1), null, { name: 'renamed' }));
    const a4 = op(OWNER_A, 4, 'update', state(nid(1), null, { name: 'later' }));
    assert.equal(store.applyOp(a2), 'gap', 'seq 2 before seq 1');
    assert.equal(store.node(nid(1)), undefined, 'a gap changes nothing');
    assert.equal(store.applyOp(a1), 'applied');
    assert.equal(store.applyOp(a1), 'duplicate');
    assert.equal(store.applyOp(a4), 'gap');
    assert.equal(store.applyOp(a2), 'applied');
    assert.equal(store.applyOp({ ...a1, node: state(nid(1), null, { name: 'replayed' }) }), 'duplicate');
    assert.equal(store.node(nid(1))?.name, 'renamed');
    assert.equal(store.node(nid(1))?.version, 2);
    assert.deepEqual(held(store, OWNER_A), { applied: 2, logFloor: 1 });
    assert.equal(store.ownerState(OWNER_A).headHlc, a2.hlc, 'the stamp of the last op applied');
    assert.deepEqual(held(store, OWNER_B), { applied: 0, logFloor: 1 }, 'an unknown owner');
    store.close();
  });

  test('the version vector is the applied seq of every owner', () => {
    const store = new Store(':memory:');
    assert.deepEqual(store.versionVector(), {});
    const w = new Writer(store);
    w.write(OWNER_A, 'create', state(nid(1), null));
    w.write(OWNER_B, 'create', state(nid(2), nid(1)));
    w.write(OWNER_A, 'update', state(nid(1), null, { name: 'x' }));
    assert.deepEqual(store.versionVector(), { [OWNER_A]: 2, [OWNER_B]: 1 });
    store.close();
  });

  test('opsAfter returns the log of one owner after a seq, oldest first, at most limit', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    const written: Op[] = [];
    for (let i = 1; i <= 6; i++) written.push(w.write(OWNER_A, 'create', state(nid(i), null)));
    w.write(OWNER_B, 'create', state(nid(99), null));
    assert.deepEqual(store.opsAfter(OWNER_A, 0, 100), written);
    assert.deepEqual(
      store.opsAfter(OWNER_A, 2, 3).map((o) => o.seq),
      [3, 4, 5],
    );
    assert.deepEqual(store.opsAfter(OWNER_A, 6, 10), []);
    assert.deepEqual(
      store.opsAfter(OWNER_B, 0, 10).map((o) => o.node.id),
      [nid(99)],
    );
    store.close();
  });

  test('a node carries its op: owner, version, hlc, value, and delete leaves a tombstone', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    w.write(
      OWNER_A,
      'create',
      state(nid(1), null, { type: 'DataPoint', meta: { unit: 'W', future: { x: 1 } }, value: 3.5 }),
      T0 + 1234,
    );
    const node = store.node(nid(1))!;
    assert.deepEqual(node, {
      id: nid(1),
      type: 'DataPoint',
      parent: null,
      owner: OWNER_A,
      name: `node ${nid(1).slice(-4)}`,
      meta: { unit: 'W', future: { x: 1 } },
      value: 3.5,
      updatedAt: new Date(T0 + 1234).toISOString(),
      version: 1,
      hlc: encodeHlc(T0 + 1234, 0),
      deleted: false,
    } satisfies StoredNode);
    w.write(OWNER_A, 'delete', state(nid(1), null, { type: 'DataPoint' }));
    assert.equal(store.node(nid(1))?.deleted, true);
    assert.equal(store.visibleNode(nid(1)), undefined);
    assert.deepEqual(store.nodes(), []);
    assert.deepEqual(store.counts(), { nodes: 0, ops: 2, points: 1 });
    store.close();
  });

  test('a failing transaction stores nothing of its ops', () => {
    const store = new Store(':memory:');
    assert.throws(
      () =>
        store.transaction('FULL', () => {
          store.applyOp(op(OWNER_A, 1, 'create', state(nid(1), null)));
          throw new Error('boom');
        }),
      /boom/,
    );
    assert.equal(store.node(nid(1)), undefined);
    assert.deepEqual(store.versionVector(), {});
    assert.deepEqual(store.opsAfter(OWNER_A, 0, 10), []);
    store.close();
  });

  test('applyPending: visible at once, on disk only after commitPending or another transaction', () => {
    const file = tempFile();
    const store = new Store(file);
    const onDisk = (): Record<string, number> => {
      const other = new Store(file);
      const vv = other.versionVector();
      other.close();
      return vv;
    };
    store.applyPending(() => store.applyOp(op(OWNER_A, 1, 'create', state(nid(1), null))));
    store.applyPending(() => store.applyOp(op(OWNER_A, 2, 'update', state(nid(1), null, { name: 'b' }))));
    assert.equal(store.node(nid(1))?.name, 'b');
    assert.deepEqual(onDisk(), {});
    assert.equal(store.commitPending(), true);
    assert.deepEqual(onDisk(), { [OWNER_A]: 2 });

    store.applyPending(() => store.applyOp(op(OWNER_B, 1, 'create', state(nid(2), null))));
    store.transaction('FULL', () => store.applyOp(op(OWNER_A, 3, 'value', state(nid(1), null))));
    assert.deepEqual(onDisk(), { [OWNER_A]: 3, [OWNER_B]: 1 });
    store.close();
  });

  test('API keys and maintenance never join pending replicated ops: a key is on disk at once', () => {
    const file = tempFile();
    const store = new Store(file);
    const key = { id: 'k1', name: 'ci', scope: 'read', digest: 'd1', createdAt: new Date(T0).toISOString() };
    const keysOnDisk = (): string[] => {
      const other = new Store(file);
      const ids = other.apiKeys().map((k) => k.id);
      other.close();
      return ids;
    };
    store.applyPending(() => store.applyOp(op(OWNER_A, 1, 'create', state(nid(1), null))));
    store.insertApiKey(key);
    assert.deepEqual(keysOnDisk(), ['k1']);
    store.applyPending(() => store.applyOp(op(OWNER_A, 2, 'update', state(nid(1), null, { name: 'b' }))));
    assert.equal(store.deleteApiKey('k1'), true);
    assert.deepEqual(keysOnDisk(), []);
    store.applyPending(() => store.applyOp(op(OWNER_A, 3, 'update', state(nid(1), null, { name: 'c' }))));
    store.pruneSeries(T0, 1000);
    store.collectTombstones(encodeHlc(T0, 0));
    const other = new Store(file);
    assert.deepEqual(other.versionVector(), { [OWNER_A]: 3 }, 'what was pending committed first');
    other.close();
    store.close();
  });

  test('applyPending: a throw undoes only its own ops; a crash (discardPending) loses the pending', () => {
    const store = new Store(':memory:');
    store.applyPending(() => store.applyOp(op(OWNER_A, 1, 'create', state(nid(1), null))));
    assert.throws(
      () =>
        store.applyPending(() => {
          store.applyOp(op(OWNER_A, 2, 'update', state(nid(1), null, { name: 'lost' })));
          throw new Error('boom');
        }),
      /boom/,
    );
    assert.equal(store.node(nid(1))?.name, state(nid(1), null).name);
    assert.deepEqual(store.versionVector(), { [OWNER_A]: 1 });
    store.discardPending();
    assert.equal(store.node(nid(1)), undefined);
    assert.deepEqual(store.versionVector(), {});
    assert.equal(store.commitPending(), true, 'nothing left to commit');
    store.close();
  });

  test('ownerOf names the owner of a live node only', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    w.write(OWNER_B, 'create', state(nid(1), null));
    assert.equal(store.ownerOf(nid(1)), OWNER_B);
    assert.equal(store.ownerOf(nid(2)), undefined, 'no such node');
    w.write(OWNER_B, 'delete', state(nid(1), null));
    assert.equal(store.ownerOf(nid(1)), undefined, 'a tombstone');
    store.close();
  });

  test('the node an op leaves, as events show it, is the node read back, key order included', () => {
    const json: fc.Arbitrary<unknown> = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)));
    fc.assert(
      fc.property(
        fc.record({
          type: fc.constantFrom<NodeType>('Project', 'DataPoint', 'Button'),
          name: fc.string({ minLength: 1, maxLength: 20 }),
          meta: fc.dictionary(fc.string({ maxLength: 8 }), json, { maxKeys: 4 }).map((m) => ({ ...m })),
          value: fc.option(json, { nil: undefined }),
          parent: fc.option(fc.constant(nid(99)), { nil: null }),
          wall: fc.integer({ min: 0, max: 2 ** 47 }),
        }),
        ({ type, name, meta, value, parent, wall }) => {
          const store = new Store(':memory:');
          const node: NodeState = { id: nid(1), type, parent, name, meta };
          if (value !== undefined && value !== null) node.value = value;
          const o = op(OWNER_A, 1, 'create', node, wall);
          store.transaction('NORMAL', () => store.applyOp(o));
          const shown = apiNodeOf(o);
          const read = toApi(store.node(nid(1))!);
          assert.deepEqual(shown, read);
          assert.equal(JSON.stringify(shown), JSON.stringify(read));
          store.close();
        },
      ),
    );
  });

  test('opsAfter stops at upTo', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    for (let i = 0; i < 5; i++) w.write(OWNER_A, i === 0 ? 'create' : 'update', state(nid(1), null));
    assert.deepEqual(
      store.opsAfter(OWNER_A, 1, 10, 3).map((o) => o.seq),
      [2, 3],
    );
    assert.deepEqual(
      store.opsAfter(OWNER_A, 1, 2).map((o) => o.seq),
      [2, 3],
    );
    store.close();
  });
});

describe('Store: value ops', () => {
  test('any run of ops leaves the node as its last op says, the narrow value update included', () => {
    const step = fc.oneof(
      fc.record({
        kind: fc.constant<OpKind>('value'),
        // Values as JSON keeps them: -0 reads back as 0, and NaN and Infinity are no JSON.
        value: fc.oneof(
          fc.double({ noNaN: true, noDefaultInfinity: true }).map((v) => v + 0),
          fc.boolean(),
        ),
      }),
      // A value op carrying a state that is not the row's (never in sequence order): the state wins.
      fc.record({
        kind: fc.constant<OpKind>('value'),
        value: fc.integer(),
        name: fc.string({ maxLength: 5 }),
      }),
      fc.record({
        kind: fc.constant<OpKind>('update'),
        name: fc.string({ maxLength: 5 }),
        unit: fc.string(),
      }),
      fc.record({ kind: fc.constant<OpKind>('delete') }),
    );
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 12 }), fc.boolean(), (steps, pending) => {
        const store = new Store(':memory:');
        let current: NodeState = { id: nid(1), type: 'DataPoint', parent: null, name: 't', meta: {} };
        let seq = 1;
        store.transaction('FULL', () => store.applyOp(op(OWNER_A, seq, 'create', current)));
        for (const s of steps) {
          const next: NodeState = { ...current };
          if ('name' in s) next.name = s.name;
          if ('unit' in s) next.meta = { unit: s.unit };
          if ('value' in s) next.value = s.value;
          const o = op(OWNER_A, ++seq, s.kind, next);
          const apply = (): unknown => store.applyOp(o);
          if (pending) store.applyPending(apply);
          else store.transaction('FULL', apply);
          const read = store.node(nid(1))!;
          assert.equal(read.deleted, s.kind === 'delete');
          assert.equal(read.version, seq);
          if (s.kind !== 'delete') assert.deepEqual(toApi(read), apiNodeOf(o));
          current = next;
        }
        assert.equal(
          store.series(nid(1), 0, Number.MAX_SAFE_INTEGER, 100).length,
          steps.filter((s) => s.kind === 'value').length,
        );
        store.close();
      }),
    );
  });
});

describe('Store: the visible tree', () => {
  interface Plan {
    /** For node i: its parent (an earlier node, no parent, or an id that never arrives). */
    parents: ({ kind: 'root' } | { kind: 'node'; index: number } | { kind: 'missing' })[];
    owners: number[];
    types: NodeType[];
    deleted: boolean[];
    /** The order the creates arrive in (each owner's still in its own sequence). */
    order: number[];
  }

  const plan: fc.Arbitrary<Plan> = fc.integer({ min: 1, max: 24 }).chain((n) =>
    fc.record({
      parents: fc.tuple(
        ...Array.from({ length: n }, (_, i) =>
          fc.oneof(
            { weight: 1, arbitrary: fc.constant({ kind: 'root' as const }) },
            { weight: 1, arbitrary: fc.constant({ kind: 'missing' as const }) },
            {
              weight: i === 0 ? 0 : 6,
              arbitrary: fc.integer({ min: 0, max: Math.max(0, i - 1) }).map((index) => ({
                kind: 'node' as const,
                index,
              })),
            },
          ),
        ),
      ),
      owners: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: n, maxLength: n }),
      types: fc.array(fc.constantFrom<NodeType>('Project', 'DataPoint', 'Button'), {
        minLength: n,
        maxLength: n,
      }),
      deleted: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      order: fc.shuffledSubarray(
        Array.from({ length: n }, (_, i) => i),
        { minLength: n, maxLength: n },
      ),
    }),
  );

  function parentOf(p: Plan, i: number): string | null {
    const parent = p.parents[i]!;
    if (parent.kind === 'root') return null;
    if (parent.kind === 'missing') return nid(10_000 + i);
    return nid(parent.index + 1);
  }

  test('a node is listed iff it and all its ancestors are live and the chain reaches a root', () => {
    fc.assert(
      fc.property(plan, (p) => {
        const store = new Store(':memory:');
        const w = new Writer(store);
        const n = p.parents.length;
        const stateOf = (i: number): NodeState =>
          state(nid(i + 1), parentOf(p, i), { type: p.types[i]!, name: `n${i % 5}` });
        for (const i of p.order) w.write(OWNERS[p.owners[i]!]!, 'create', stateOf(i));
        for (let i = 0; i < n; i++) {
          if (p.deleted[i]) w.write(OWNERS[p.owners[i]!]!, 'delete', stateOf(i));
        }

        const visible = (i: number): boolean => {
          if (p.deleted[i]) return false;
          const parent = p.parents[i]!;
          if (parent.kind === 'root') return true;
          if (parent.kind === 'missing') return false;
          return visible(parent.index);
        };
        const expected = Array.from({ length: n }, (_, i) => i).filter(visible);
        const listed = store.nodes();
        assert.deepEqual(listed.map((x) => x.id).sort(), expected.map((i) => nid(i + 1)).sort());
        // Ordered by type, name, id.
        const key = (x: { type: string; name: string; id: string }): string =>
          `${x.type}\u0000${x.name}\u0000${x.id}`;
        assert.deepEqual(
          listed.map(key),
          listed.map(key).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
        );
        for (let i = 0; i < n; i++) {
          assert.equal(store.visibleNode(nid(i + 1))?.id, visible(i) ? nid(i + 1) : undefined, `node ${i}`);
        }
        // Filters pick from what is visible.
        for (const owner of OWNERS) {
          assert.deepEqual(
            store.nodes({ owner }).map((x) => x.id),
            listed.filter((x) => x.owner === owner).map((x) => x.id),
          );
        }
        assert.deepEqual(
          store.nodes({ type: 'DataPoint' }).map((x) => x.id),
          listed.filter((x) => x.type === 'DataPoint').map((x) => x.id),
        );
        assert.deepEqual(
          store.nodes({ parent: nid(1) }).map((x) => x.id),
          listed.filter((x) => x.parent === nid(1)).map((x) => x.id),
        );
        // childIds lists live children, visible or not.
        for (let i = 0; i < n; i++) {
          const children = Array.from({ length: n }, (_, j) => j).filter(
            (j) => parentOf(p, j) === nid(i + 1) && !p.deleted[j],
          );
          assert.deepEqual(store.childIds(nid(i + 1)).sort(), children.map((j) => nid(j + 1)).sort());
        }
        store.close();
      }),
      { numRuns: 150 },
    );
  });

  test('visibleNode gives up on a parent cycle instead of looping', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    w.write(OWNER_A, 'create', state(nid(1), nid(2)));
    w.write(OWNER_A, 'create', state(nid(2), nid(1)));
    assert.equal(store.visibleNode(nid(1)), undefined);
    assert.deepEqual(store.nodes(), []);
    store.close();
  });
});

describe('Store: snapshots, compaction, tombstones', () => {
  test('replaceOwner swaps in a snapshot of one owner: nodes, no log, floor past it', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    w.write(OWNER_A, 'create', state(nid(1), null));
    w.write(OWNER_A, 'create', state(nid(2), nid(1)));
    w.write(OWNER_A, 'create', state(nid(3), nid(1)));
    w.write(OWNER_A, 'delete', state(nid(3), nid(1)));
    w.write(OWNER_B, 'create', state(nid(9), nid(1)));
    const snapshot: StoredNode[] = [
      {
        ...store.node(nid(1))!,
        name: 'renamed at the owner',
        version: 8,
        hlc: encodeHlc(T0 + 8, 0),
      },
      {
        id: nid(4),
        type: 'DataPoint',
        parent: nid(1),
        owner: OWNER_A,
        name: 'new',
        meta: { unit: 'V' },
        value: 12,
        updatedAt: '',
        version: 10,
        hlc: encodeHlc(T0 + 10, 0),
        deleted: false,
      },
    ];
    store.transaction('NORMAL', () => store.replaceOwner(OWNER_A, 10, snapshot));
    assert.deepEqual(
      store.ownerNodes(OWNER_A).map((x) => [x.id, x.name, x.version]),
      [
        [nid(1), 'renamed at the owner', 8],
        [nid(4), 'new', 10],
      ],
    );
    assert.equal(store.node(nid(2)), undefined, 'gone: not in the snapshot');
    assert.equal(store.node(nid(3)), undefined, 'tombstones go too');
    assert.equal(store.node(nid(4))?.value, 12);
    assert.equal(store.node(nid(4))?.updatedAt, new Date(T0 + 10).toISOString());
    assert.deepEqual(store.opsAfter(OWNER_A, 0, 100), []);
    assert.deepEqual(held(store, OWNER_A), { applied: 10, logFloor: 11 });
    assert.deepEqual(held(store, OWNER_B), { applied: 1, logFloor: 1 }, 'other owners untouched');
    assert.equal(store.node(nid(9))?.owner, OWNER_B);
    assert.equal(store.applyOp(op(OWNER_A, 10, 'update', state(nid(1), null))), 'duplicate');
    assert.equal(store.applyOp(op(OWNER_A, 12, 'update', state(nid(1), null))), 'gap');
    assert.equal(store.applyOp(op(OWNER_A, 11, 'update', state(nid(1), null, { name: 'n11' }))), 'applied');
    assert.deepEqual(held(store, OWNER_A), { applied: 11, logFloor: 11 });
    assert.deepEqual(
      store.opsAfter(OWNER_A, 0, 100).map((o) => o.seq),
      [11],
    );
    store.close();
  });

  test('compactLog keeps the newest N ops of each owner and raises the floor, never lowers it', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 30 }), { minLength: 3, maxLength: 3 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 4 }),
        (counts, keeps) => {
          const store = new Store(':memory:');
          const w = new Writer(store);
          let id = 0;
          counts.forEach((count, o) => {
            for (let i = 0; i < count; i++) w.write(OWNERS[o]!, 'create', state(nid(++id), null));
          });
          const floor = counts.map(() => 1);
          for (const keep of keeps) {
            let expectRemoved = 0;
            counts.forEach((applied, o) => {
              const next = Math.max(floor[o]!, applied - keep + 1);
              expectRemoved += next - floor[o]!;
              floor[o] = next;
            });
            assert.equal(store.compactLog(keep), expectRemoved);
            counts.forEach((applied, o) => {
              const owner = OWNERS[o]!;
              if (applied === 0) return;
              assert.deepEqual(held(store, owner), { applied, logFloor: floor[o] });
              const seqs = store.opsAfter(owner, 0, 1000).map((x) => x.seq);
              assert.deepEqual(
                seqs,
                Array.from({ length: applied - floor[o]! + 1 }, (_, i) => floor[o]! + i),
              );
            });
          }
          store.close();
        },
      ),
      { numRuns: 60 },
    );
  });

  test('collectTombstones removes only tombstones older than the bound whose op left the log', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    for (let i = 1; i <= 4; i++) w.write(OWNER_A, 'create', state(nid(i), null), T0 + i); // seq 1-4
    w.write(OWNER_A, 'delete', state(nid(1), null), T0 + 10); // seq 5
    w.write(OWNER_A, 'delete', state(nid(2), null), T0 + 20); // seq 6
    w.write(OWNER_A, 'delete', state(nid(3), null), T0 + 30); // seq 7
    w.write(OWNER_B, 'create', state(nid(8), null), T0 + 1); // B seq 1
    w.write(OWNER_B, 'delete', state(nid(8), null), T0 + 2); // B seq 2, B's log never compacted
    assert.equal(store.collectTombstones(encodeHlc(T0 + 1000, 0)), 0, 'every op is still in the log');
    store.compactLog(2); // A's floor 6: the op of the first delete (seq 5) has left the log
    assert.deepEqual(held(store, OWNER_A), { applied: 7, logFloor: 6 });
    assert.equal(store.collectTombstones(encodeHlc(T0 + 5, 0)), 0, 'too recent');
    assert.equal(store.collectTombstones(encodeHlc(T0 + 1000, 0)), 1);
    assert.equal(store.node(nid(1)), undefined);
    assert.equal(store.node(nid(2))?.deleted, true, 'its op (seq 6) is still in the log');
    assert.equal(store.node(nid(3))?.deleted, true);
    assert.equal(store.node(nid(4))?.deleted, false, 'live nodes stay');
    assert.equal(store.node(nid(8))?.deleted, true, "B's log still holds it");
    store.compactLog(0);
    assert.equal(store.collectTombstones(encodeHlc(T0 + 25, 0)), 2, 'A seq 6 and B seq 2, both old enough');
    assert.equal(store.node(nid(3))?.deleted, true, 'newer than the bound');
    assert.equal(store.node(nid(4))?.deleted, false);
    store.close();
  });
});

describe('Store: series', () => {
  test("value ops append to a data point's series at the op's wall time", () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    const dp = (value?: unknown): NodeState =>
      state(nid(1), null, { type: 'DataPoint', ...(value === undefined ? {} : { value }) });
    w.write(OWNER_A, 'create', dp(1), T0 + 1); // a value given at creation is a reading too
    w.write(OWNER_A, 'value', dp(2), T0 + 2);
    w.write(OWNER_A, 'update', { ...dp(2), name: 'renamed' }, T0 + 3);
    w.write(OWNER_A, 'value', dp({ a: [1] }), T0 + 4);
    w.write(OWNER_A, 'value', dp(null), T0 + 5);
    w.write(OWNER_A, 'create', state(nid(2), null, { value: 7 }), T0 + 6);
    w.write(OWNER_A, 'value', state(nid(2), null, { value: 8 }), T0 + 7); // not a DataPoint
    assert.deepEqual(store.series(nid(1), 0, Number.MAX_SAFE_INTEGER, 100), [
      { t: T0 + 1, value: 1 },
      { t: T0 + 2, value: 2 },
      { t: T0 + 4, value: { a: [1] } },
      { t: T0 + 5, value: null },
    ]);
    assert.deepEqual(store.series(nid(1), T0 + 3, T0 + 4, 100), [{ t: T0 + 4, value: { a: [1] } }]);
    assert.deepEqual(store.series(nid(1), 0, Number.MAX_SAFE_INTEGER, 1), [{ t: T0 + 1, value: 1 }]);
    assert.deepEqual(store.series(nid(2), 0, Number.MAX_SAFE_INTEGER, 100), []);
    assert.equal(store.counts().points, 4);
    // Pages: `more` when the limit or the bytes left points out; one point at least.
    const all = Number.MAX_SAFE_INTEGER;
    assert.deepEqual(store.seriesPage(nid(1), 0, all, 4, 1000).more, false);
    assert.deepEqual(store.seriesPage(nid(1), 0, all, 3, 1000), {
      points: store.series(nid(1), 0, all, 3),
      more: true,
    });
    // "1", "2" and '{"a":[1]}' are 11 bytes: a page of 10 stops after two.
    assert.deepEqual(store.seriesPage(nid(1), 0, all, 100, 10), {
      points: store.series(nid(1), 0, all, 2),
      more: true,
    });
    assert.deepEqual(store.seriesPage(nid(1), 0, all, 100, 0).points.length, 1);
    store.close();
  });

  test("property: paging from the millisecond after each page's last point reads every point once", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 40 }),
        (steps, limit, maxBytes) => {
          const store = new Store(':memory:');
          const w = new Writer(store);
          const dp = (value: number): NodeState => state(nid(1), null, { type: 'DataPoint', value });
          // Many points share a millisecond: a step of 0 writes at the same wall time.
          let wall = T0;
          steps.forEach((step, i) => {
            wall += step === 0 || step > 10 ? 0 : step;
            w.write(OWNER_A, i === 0 ? 'create' : 'value', dp(i), wall);
          });
          const all = store.series(nid(1), 0, Number.MAX_SAFE_INTEGER, 1000);
          const read: typeof all = [];
          let from = 0;
          for (let pages = 0; pages < 1000; pages++) {
            const page = store.seriesPage(nid(1), from, Number.MAX_SAFE_INTEGER, limit, maxBytes);
            read.push(...page.points);
            if (!page.more) break;
            from = page.points[page.points.length - 1]!.t + 1;
          }
          assert.deepEqual(read, all);
          store.close();
        },
      ),
      { numRuns: 300 },
    );
  });

  test("pruneSeries drops values older than the data point's retentionMs, else the default", () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    const short = state(nid(1), null, { type: 'DataPoint', meta: { retentionMs: 5_000 } });
    const plain = state(nid(2), null, { type: 'DataPoint' });
    w.write(OWNER_A, 'create', short, T0);
    w.write(OWNER_A, 'create', plain, T0);
    for (const age of [1_000, 4_000, 6_000, 30_000, 70_000]) {
      w.write(OWNER_A, 'value', { ...short, value: age }, T0 + 100_000 - age);
      w.write(OWNER_A, 'value', { ...plain, value: age }, T0 + 100_000 - age);
    }
    const now = T0 + 100_000;
    assert.equal(store.pruneSeries(now, 60_000), 3 + 1);
    const ages = (id: string): unknown[] =>
      store.series(id, 0, Number.MAX_SAFE_INTEGER, 100).map((p) => p.value);
    assert.deepEqual(ages(nid(1)), [4_000, 1_000]);
    assert.deepEqual(ages(nid(2)), [30_000, 6_000, 4_000, 1_000]);
    assert.equal(store.pruneSeries(now, 60_000), 0);
    assert.equal(store.pruneSeries(now, 10_000), 1, 'a shorter default');
    assert.deepEqual(ages(nid(2)), [6_000, 4_000, 1_000]);
    store.close();
  });
});

describe('Store: the database file', () => {
  test('a database file that is a symlink opens, its log beside the real file', () => {
    const real = tempFile();
    new Store(real).close();
    const link = join(dirname(real), 'link.db');
    symlinkSync(real, link);
    const store = new Store(link);
    new Writer(store).write(OWNER_A, 'create', state(nid(1), null));
    store.close();
    const again = new Store(real);
    assert.equal(again.node(nid(1))?.type, 'Project');
    again.close();
  });

  test('syncLog confirms what was committed, also when the store closes while the fsync runs', async () => {
    const file = tempFile();
    const store = new Store(file);
    const w = new Writer(store);
    w.write(OWNER_A, 'create', state(nid(1), null));
    const sync = () =>
      new Promise<void>((resolve, reject) => store.syncLog((err) => (err ? reject(err) : resolve())));
    await sync();
    w.write(OWNER_A, 'update', state(nid(1), null, { name: 'synced' }));
    const running = sync();
    store.close(); // The log's descriptor stays open until that fsync returns.
    await running;
    await sync(); // Closed: nothing left to sync, and no error.
    const again = new Store(file);
    assert.equal(again.node(nid(1))?.name, 'synced');
    again.close();
  });

  test('a file database keeps everything across close and reopen, at the current schema', () => {
    const file = tempFile();
    const first = new Store(file);
    const w = new Writer(first);
    w.write(OWNER_A, 'create', state(nid(1), null, { type: 'DataPoint' }));
    w.write(OWNER_A, 'value', state(nid(1), null, { type: 'DataPoint', value: 5 }));
    w.write(OWNER_B, 'create', state(nid(2), nid(1)));
    first.compactLog(1);
    first.close();
    first.close(); // Safe twice.

    const raw = new Database(file, { readonly: true });
    assert.equal(raw.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    raw.close();

    const again = new Store(file);
    assert.deepEqual(again.versionVector(), { [OWNER_A]: 2, [OWNER_B]: 1 });
    assert.deepEqual(held(again, OWNER_A), { applied: 2, logFloor: 2 });
    assert.deepEqual(
      again.nodes().map((n) => n.id),
      [nid(1), nid(2)],
    );
    assert.equal(again.node(nid(1))?.value, 5);
    assert.equal(again.series(nid(1), 0, Number.MAX_SAFE_INTEGER, 10).length, 1);
    assert.equal(
      again.applyOp(op(OWNER_A, 3, 'update', state(nid(1), null, { type: 'DataPoint' }))),
      'applied',
    );
    again.close();
  });

  test('a database of an older schema is brought up to date with what it holds', () => {
    const file = tempFile();
    mkdirSync(dirname(file), { recursive: true });
    const old = new Database(file);
    old.pragma('journal_mode = WAL');
    for (const [i, sql] of MIGRATIONS.slice(0, 2).entries()) {
      old.exec(sql);
      old.pragma(`user_version = ${i + 1}`);
    }
    old
      .prepare(
        `INSERT INTO nodes (id, type, parent, owner, name, meta, value, hlc, version, deleted)
         VALUES (?, 'DataPoint', NULL, ?, 'kept', '{}', '7', ?, 1, 0)`,
      )
      .run(nid(1), OWNER_A, encodeHlc(T0, 0));
    old.prepare('INSERT INTO owners (owner, applied, log_floor) VALUES (?, 1, 1)').run(OWNER_A);
    old.close();

    const store = new Store(file);
    assert.equal(store.node(nid(1))?.value, 7);
    assert.equal(
      store.applyOp(
        op(OWNER_A, 2, 'value', state(nid(1), null, { type: 'DataPoint', name: 'kept', value: 8 })),
      ),
      'applied',
    );
    assert.equal(store.node(nid(1))?.value, 8);
    store.close();
    const raw = new Database(file, { readonly: true });
    assert.equal(raw.pragma('user_version', { simple: true }), MIGRATIONS.length);
    const columns = raw.prepare('SELECT name FROM pragma_index_info(?)').pluck().all('nodes_owner');
    assert.deepEqual(columns, ['owner']);
    raw.close();
  });

  test('a database of a newer schema is refused with SHOAL_DATA_DIR and left untouched', () => {
    const file = tempFile();
    new Store(file).close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    raw.close();
    assert.throws(
      () => new Store(file),
      (err: unknown) =>
        err instanceof ShoalError && err.code === 'SHOAL_DATA_DIR' && /newer shoal/.test(err.message),
    );
    const check = new Database(file, { readonly: true });
    assert.equal(check.pragma('user_version', { simple: true }), MIGRATIONS.length + 1);
    check.close();
  });

  test('a file that is not a database is refused with SHOAL_DATA_DIR', () => {
    const file = tempFile();
    new Store(file).close();
    rmSync(`${file}-wal`, { force: true });
    rmSync(`${file}-shm`, { force: true });
    writeFileSync(file, 'this is not an SQLite database, just some text long enough to have a header');
    assert.throws(
      () => new Store(file),
      (err: unknown) => err instanceof ShoalError && err.code === 'SHOAL_DATA_DIR',
    );
  });
});

describe("Store: what a fork of an owner's numbering needs (replicator.ts #mendFork)", () => {
  test('the stamp of the last op survives compaction, and comes with a snapshot', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    w.write(OWNER_A, 'create', state(nid(1), null), T0 + 1);
    const last = w.write(OWNER_A, 'update', state(nid(1), null, { name: 'b' }), T0 + 2);
    store.compactLog(0);
    assert.deepEqual(store.opsAfter(OWNER_A, 0, 10), []);
    assert.equal(store.ownerState(OWNER_A).headHlc, last.hlc);
    store.transaction('NORMAL', () =>
      store.replaceOwner(
        OWNER_B,
        5,
        [
          {
            ...toApi(store.node(nid(1))!),
            id: nid(5),
            owner: OWNER_B,
            hlc: encodeHlc(T0 + 5, 0),
            deleted: true,
          },
        ],
        encodeHlc(T0 + 5, 0),
      ),
    );
    assert.equal(store.ownerState(OWNER_B).headHlc, encodeHlc(T0 + 5, 0));
    assert.equal(store.node(nid(5))?.deleted, true, 'a deleted node of a snapshot stays a tombstone');
    store.close();
  });

  test('skipOwnerTo moves the numbering and the floor on, keeping the ops below for their stamps', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    w.write(OWNER_A, 'create', state(nid(1), null), T0 + 1);
    w.write(OWNER_A, 'update', state(nid(1), null, { name: 'b' }), T0 + 2);
    store.transaction('FULL', () => store.skipOwnerTo(OWNER_A, 9, encodeHlc(T0 + 9, 0)));
    assert.deepEqual(store.ownerState(OWNER_A), { applied: 9, logFloor: 10, headHlc: encodeHlc(T0 + 9, 0) });
    assert.deepEqual(
      store.opsAfter(OWNER_A, 0, 10).map((o) => o.seq),
      [1, 2],
    );
    assert.equal(store.applyOp(op(OWNER_A, 10, 'update', state(nid(1), null, { name: 'c' }))), 'applied');
    store.close();
  });

  test('mergeState: a newer state wins, an older one changes nothing; a reading is kept once', () => {
    const store = new Store(':memory:');
    const w = new Writer(store);
    const dp = (value: number): NodeState => state(nid(1), null, { type: 'DataPoint', value });
    w.write(OWNER_A, 'create', dp(1), T0 + 10);
    const older = { hlc: encodeHlc(T0 + 5, 0), version: 7, kind: 'value' as const };
    assert.equal(
      store.transaction('NORMAL', () => store.mergeState(OWNER_A, dp(5), older)),
      undefined,
    );
    assert.equal(store.node(nid(1))?.value, 1, 'the older state lost');
    const newer = { hlc: encodeHlc(T0 + 20, 0), version: 8, kind: 'value' as const };
    const won = store.transaction('NORMAL', () => store.mergeState(OWNER_A, dp(20), newer));
    assert.equal(won?.value, 20);
    store.transaction('NORMAL', () => store.mergeState(OWNER_A, dp(20), newer)); // Again: no second reading.
    assert.deepEqual(
      store.series(nid(1), 0, Number.MAX_SAFE_INTEGER, 10).map((p) => p.value),
      [5, 1, 20],
      'the readings of both histories, once each',
    );
    const gone = { hlc: encodeHlc(T0 + 30, 0), version: 9, kind: 'delete' as const };
    assert.equal(store.transaction('NORMAL', () => store.mergeState(OWNER_A, dp(20), gone))?.deleted, true);
    store.close();
  });
});
