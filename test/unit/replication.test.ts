/**
 * Replication (src/replication/replicator.ts) on a simulated mesh (test/support/sim-mesh.ts):
 * several Replicators, each with its own in-memory Store, HLC, EventBus and Metrics, in virtual
 * time. The invariant checked after every run: once the mesh is whole again and quiet, every
 * replica shows the same nodes as the union of what each owner holds of its own nodes, at the
 * owner's versions, and every replica has the same version vector.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import pino from 'pino';
import { encodeHlc, HybridClock } from '../../src/clock.ts';
import { ShoalError } from '../../src/errors.ts';
import { EventBus, type ShoalEvent } from '../../src/events.ts';
import { type LinkMessage, parseMessage, type WriteRequest } from '../../src/link/messages.ts';
import { Metrics } from '../../src/metrics.ts';
import { NodeService } from '../../src/replication/node-service.ts';
import { Replicator, type ReplicatorOptions, type WriteOutcome } from '../../src/replication/replicator.ts';
import { type Op, type ShoalNode, Store, toApi } from '../../src/store/store.ts';
import { seededRandom } from '../support/fake-clock.ts';
import { SimMesh, type SimMeshOptions } from '../support/sim-mesh.ts';

// --- A simulated cluster ----------------------------------------------------------------------

interface SimPeer {
  id: string;
  name: string;
  store: Store;
  bus: EventBus;
  /** Every event published on `bus`. */
  events: ShoalEvent[];
  /** What the peer logged at error level (JSON lines). */
  errors: string[];
  /** Servers retired from the mesh, as this peer knows (src/replication/retirement.ts). */
  retired: Set<string>;
  /** These three are replaced when the peer restarts. */
  replicator: Replicator;
  nodes: NodeService;
  metrics: Metrics;
}

/** (Re)starts a peer's replication on its store, as the composition root (src/peer.ts) does. */
function boot(net: SimMesh, peer: SimPeer, peers: SimPeer[], options: ReplicatorOptions): void {
  peer.metrics = new Metrics({ processMetrics: false });
  peer.replicator = new Replicator(
    {
      selfId: peer.id,
      store: peer.store,
      mesh: net.port(peer.id),
      clock: net.time,
      hlc: new HybridClock(net.time, 1000),
      events: peer.bus,
      metrics: peer.metrics,
      log: pino({ level: 'error' }, { write: (line: string) => peer.errors.push(line) }),
      retired: (owner) => peer.retired.has(owner),
    },
    options,
  );
  peer.nodes = new NodeService({
    selfId: peer.id,
    store: peer.store,
    replicator: peer.replicator,
    knows: (other) => peers.some((p) => p.id === other),
  });
  net.attach(peer.id, peer.replicator);
  peer.replicator.start();
}

interface Cluster {
  net: SimMesh;
  peers: SimPeer[];
  /** The links of the topology, as pairs of peer indexes. */
  links: [number, number][];
  /** A fresh node id (deterministic, so a failing run replays exactly). */
  newId(): string;
  healAll(): void;
  /**
   * Stops peer i's replication and starts it again on the same store, relinking what was linked.
   * A crash loses the replicated ops not yet committed; a clean stop commits them.
   */
  restart(i: number, crash?: boolean): void;
  close(): void;
}

const DEFAULT_OPTIONS: ReplicatorOptions = {
  forwardTimeoutMs: 300,
  maxPendingWrites: 10_000,
  batchOps: 3,
  batchBytes: 2 * 1024 * 1024,
  maxJsonDepth: 32,
  maxNodeBytes: 256 * 1024,
  opCacheBytes: 4 * 1024 * 1024,
  maxPendingWriteBytes: 64 * 1024 * 1024,
  // Batching on: flushes of a busy peer are gathered, as with the default settings.
  batchMs: 1,
  // As by default: replicated ops are committed a little after they are applied.
  replicaCommitMs: 20,
  maxPendingOps: 1000,
  antiEntropyIntervalMs: 60_000,
  localSync: 'NORMAL',
  restartHoldMs: 500,
};

/** Three peers, each linked to both others. */
const TRIANGLE: [number, number][] = [
  [0, 1],
  [0, 2],
  [1, 2],
];

/** Server ids are UUIDs; fixed ones keep every run of a seed identical. */
function serverId(i: number): string {
  return `5e4fe400-0000-4000-8000-${(i + 1).toString(16).padStart(12, '0')}`;
}

async function startCluster(
  n: number,
  links: [number, number][],
  sim: SimMeshOptions,
  options: Partial<ReplicatorOptions> = {},
): Promise<Cluster> {
  const net = new SimMesh(sim);
  net.time.install();
  const peers: SimPeer[] = [];
  let nextNode = 0;
  const cluster: Cluster = {
    net,
    peers,
    links,
    newId: () => `00000000-0000-4000-a000-${(++nextNode).toString(16).padStart(12, '0')}`,
    healAll: () => {
      for (const [a, b] of links) net.connect(peers[a]!.id, peers[b]!.id);
    },
    restart: (i, crash = false) => {
      const peer = peers[i]!;
      const linked = net.neighbours(peer.id);
      for (const other of linked) net.disconnect(peer.id, other);
      if (crash) peer.store.discardPending();
      peer.replicator.stop();
      boot(net, peer, peers, { ...DEFAULT_OPTIONS, ...options });
      for (const other of linked) net.connect(peer.id, other);
    },
    close: () => {
      for (const p of peers) {
        p.replicator.stop();
        p.replicator.stop(); // Safe twice.
        p.store.close();
      }
      net.time.uninstall();
    },
  };
  try {
    for (let i = 0; i < n; i++) {
      const id = serverId(i);
      const bus = new EventBus();
      const peer = {
        id,
        name: `p${i}`,
        store: new Store(':memory:'),
        bus,
        events: [],
        errors: [],
        retired: new Set(),
      } as unknown as SimPeer;
      bus.subscribe((e) => peer.events.push(e));
      boot(net, peer, peers, { ...DEFAULT_OPTIONS, ...options });
      peers.push(peer);
      // As Peer.#publishServerNode does at start.
      await net.resolve(
        peer.replicator.write(id, {
          kind: 'create',
          node: { id, type: 'Server', parent: null, name: `p${i}`, meta: {} },
        }),
      );
    }
    cluster.healAll();
    await net.settle();
    return cluster;
  } catch (err) {
    cluster.close();
    throw err;
  }
}

/** Runs `body` on a fresh cluster and always tears it down. */
async function withCluster(
  n: number,
  links: [number, number][],
  sim: SimMeshOptions,
  options: Partial<ReplicatorOptions>,
  body: (c: Cluster) => Promise<void>,
): Promise<void> {
  const cluster = await startCluster(n, links, sim, options);
  try {
    await body(cluster);
  } finally {
    cluster.close();
  }
}

function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The state every replica must reach: each owner's own live nodes, shown when their chain of
 * parents reaches a root through nodes that are live at their owners.
 */
function ownerUnion(peers: SimPeer[]): ShoalNode[] {
  const all = new Map<string, ShoalNode>();
  for (const p of peers) for (const n of p.store.ownerNodes(p.id)) all.set(n.id, toApi(n));
  const visible = (node: ShoalNode, depth = 0): boolean => {
    if (node.parent === null) return true;
    const parent = all.get(node.parent);
    return parent !== undefined && depth < 64 && visible(parent, depth + 1);
  };
  return [...all.values()].filter((n) => visible(n)).sort(byId);
}

/** A's project with B's data point below it, both replicated: a subtree of two owners. */
async function gardenWithSoil(
  c: Cluster,
): Promise<{ a: SimPeer; b: SimPeer; project: ShoalNode; dp: ShoalNode }> {
  const [a, b] = c.peers as [SimPeer, SimPeer];
  const project = await c.net.resolve(a.nodes.create({ type: 'Project', name: 'garden' }));
  await c.net.settle();
  const dp = await c.net.resolve(b.nodes.create({ type: 'DataPoint', parent: project.id, name: 'soil' }));
  await c.net.settle();
  return { a, b, project, dp };
}

/**
 * `gardenWithSoil`, then a deletes the project while b is away and compacts its log (and, with
 * `collect`, collects the tombstone too), and the two meet again: b can catch up by snapshot only.
 */
async function deletedWhileAway(
  c: Cluster,
  collect: boolean,
): Promise<{ a: SimPeer; b: SimPeer; project: ShoalNode; dp: ShoalNode }> {
  const garden = await gardenWithSoil(c);
  const { a, b, project } = garden;
  c.net.disconnect(a.id, b.id);
  await c.net.resolve(a.nodes.delete(project.id));
  a.store.compactLog(0);
  if (collect) a.store.collectTombstones(encodeHlc(c.net.time.now() + 1000, 0));
  c.healAll();
  await c.net.settle();
  assert.ok((c.net.stats.delivered.snap ?? 0) > 0, 'a snapshot was sent');
  return garden;
}

function assertConverged(peers: SimPeer[], context = ''): void {
  const vv = peers[0]!.replicator.versionVector();
  for (const p of peers) {
    assert.deepEqual(p.replicator.versionVector(), vv, `${context} version vector of ${p.name}`);
    assert.deepEqual(p.store.versionVector(), vv, `${context} stored version vector of ${p.name}`);
    assert.equal(vv[p.id], p.store.ownerState(p.id).applied, `${context} ${p.name}'s own seq`);
  }
  const expected = ownerUnion(peers);
  for (const p of peers) {
    assert.deepEqual([...p.store.nodes()].sort(byId), expected, `${context} nodes of ${p.name}`);
  }
}

/**
 * Every live data point's readings, on every peer, are its owner's: each reading delivered once,
 * whether it came as an op or, past a compacted log, with a snapshot's backfill.
 */
function assertSeriesConverged(peers: SimPeer[], context = ''): void {
  const readings = (p: SimPeer, id: string): string[] =>
    p.store
      .series(id, 0, Number.MAX_SAFE_INTEGER, 1_000_000)
      .map((point) => `${point.t} ${JSON.stringify(point.value)}`)
      .sort();
  for (const node of peers[0]!.store.nodes()) {
    if (node.type !== 'DataPoint') continue;
    const owner = peers.find((p) => p.id === node.owner);
    if (!owner) continue;
    const expected = readings(owner, node.id);
    for (const p of peers)
      assert.deepEqual(readings(p, node.id), expected, `${context} readings of ${node.name} on ${p.name}`);
  }
}

// --- Random topologies and workloads ---------------------------------------------------------

interface Topology {
  kind: string;
  n: number;
  links: [number, number][];
}

const topology: fc.Arbitrary<Topology> = fc.integer({ min: 2, max: 6 }).chain((n) => {
  const all: [number, number][] = [];
  for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) all.push([a, b]);
  return fc.oneof(
    fc.constant({ kind: 'full mesh', n, links: all }),
    fc.constant({
      kind: 'chain',
      n,
      links: Array.from({ length: n - 1 }, (_, i): [number, number] => [i, i + 1]),
    }),
    fc.integer({ min: 0, max: n - 1 }).map((center) => ({
      kind: `star around ${center}`,
      n,
      links: Array.from({ length: n }, (_, i) => i)
        .filter((i) => i !== center)
        .map((i): [number, number] => [Math.min(i, center), Math.max(i, center)]),
    })),
    // A random spanning tree plus random extra links: connected, otherwise anything.
    fc
      .tuple(
        fc.tuple(...Array.from({ length: n - 1 }, (_, i) => fc.integer({ min: 0, max: i }))),
        fc.subarray(all),
      )
      .map(([parents, extra]) => {
        const links = new Map<string, [number, number]>();
        for (const [i, p] of parents.entries()) links.set(`${p}-${i + 1}`, [p, i + 1]);
        for (const [a, b] of extra) links.set(`${a}-${b}`, [a, b]);
        return { kind: 'random graph', n, links: [...links.values()] };
      }),
  );
});

type Step =
  | { t: 'create'; at: number; owner: number; parent: number; type: 'Project' | 'DataPoint'; wait: boolean }
  | { t: 'value'; at: number; pick: number; value: number; wait: boolean }
  | { t: 'rename'; at: number; pick: number; wait: boolean }
  | { t: 'delete'; at: number; pick: number; wait: boolean }
  | { t: 'cut'; link: number }
  | { t: 'heal'; link: number }
  | { t: 'healAll' }
  | { t: 'run'; ms: number }
  /** What Peer.#maintain does: compact the log, collect tombstones, sweep orphans. */
  | { t: 'maintain'; at: number; keep: number; ttlMs: number }
  | { t: 'restart'; at: number; crash: boolean };

const peerIndex = fc.nat({ max: 5 });
const pick = fc.nat({ max: 1000 });
const wait = fc.boolean();

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('create' as const),
      at: peerIndex,
      owner: peerIndex,
      parent: pick,
      type: fc.constantFrom('Project' as const, 'DataPoint' as const),
      wait,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('value' as const),
      at: peerIndex,
      pick,
      value: fc.integer(),
      wait,
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('rename' as const), at: peerIndex, pick, wait }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('delete' as const), at: peerIndex, pick, wait }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('cut' as const), link: pick }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('heal' as const), link: pick }) },
  { weight: 1, arbitrary: fc.constant({ t: 'healAll' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('run' as const), ms: fc.integer({ min: 0, max: 400 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('maintain' as const),
      at: peerIndex,
      keep: fc.integer({ min: 1, max: 3 }),
      ttlMs: fc.integer({ min: 0, max: 300 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('restart' as const), at: peerIndex, crash: fc.boolean() }),
  },
);

/**
 * Errors a write may meet in a mesh that partitions and restarts (SHOAL_OVERLOADED: the writer
 * restarted before its commit); anything else is a failure.
 */
const EXPECTED_REFUSALS = new Set([
  'SHOAL_NOT_FOUND',
  'SHOAL_BAD_REQUEST',
  'SHOAL_OWNER_UNREACHABLE',
  'SHOAL_OVERLOADED',
]);

interface Tracked {
  label: string;
  done: boolean;
  outcome?: unknown;
  error?: unknown;
  /** For creates: the node and its owner, to check an accepted create is in the owner's log. */
  created?: { id: string; owner: SimPeer };
}

/** Carries out a workload on a cluster; returns the writes it started. */
async function runSteps(c: Cluster, steps: Step[]): Promise<Tracked[]> {
  const { net, peers, links } = c;
  const writes: Tracked[] = [];
  let counter = 0;
  const track = (label: string, promise: Promise<unknown>, created?: Tracked['created']): Tracked => {
    const t: Tracked = { label, done: false, ...(created ? { created } : {}) };
    promise.then(
      (outcome) => {
        t.done = true;
        t.outcome = outcome;
      },
      (error: unknown) => {
        t.done = true;
        t.error = error;
      },
    );
    writes.push(t);
    return t;
  };
  /** A node of the writer's replica, chosen by `i` among those `fit` (in id order). */
  const choose = (p: SimPeer, i: number, fit: (n: ShoalNode) => boolean): ShoalNode | undefined => {
    const candidates = p.store.nodes().filter(fit).sort(byId);
    return candidates.length ? candidates[i % candidates.length] : undefined;
  };
  for (const s of steps) {
    let started: Tracked | undefined;
    switch (s.t) {
      case 'create': {
        const at = peers[s.at % peers.length]!;
        const owner = peers[s.owner % peers.length]!;
        const parent = choose(at, s.parent, (n) => n.type === 'Server' || n.type === 'Project');
        if (!parent) break;
        const id = c.newId();
        const k = ++counter;
        const req: WriteRequest = {
          kind: 'create',
          node: {
            id,
            type: s.type,
            parent: parent.id,
            name: `n${k}`,
            meta: {},
            ...(s.type === 'DataPoint' && k % 2 === 0 ? { value: k } : {}),
          },
        };
        started = track(
          `create ${s.type} ${id} at ${at.name} owned by ${owner.name}`,
          at.replicator.write(owner.id, req),
          { id, owner },
        );
        break;
      }
      case 'value': {
        const at = peers[s.at % peers.length]!;
        const node = choose(at, s.pick, (n) => n.type === 'DataPoint');
        if (node) started = track(`value ${node.id} at ${at.name}`, at.nodes.setValue(node.id, s.value));
        break;
      }
      case 'rename': {
        const at = peers[s.at % peers.length]!;
        const node = choose(at, s.pick, () => true);
        if (node) {
          started = track(
            `rename ${node.id} at ${at.name}`,
            at.nodes.update(node.id, { name: `r${++counter}` }),
          );
        }
        break;
      }
      case 'delete': {
        const at = peers[s.at % peers.length]!;
        const node = choose(at, s.pick, (n) => n.type !== 'Server');
        if (node) started = track(`delete ${node.id} at ${at.name}`, at.nodes.delete(node.id));
        break;
      }
      case 'cut': {
        const [a, b] = links[s.link % links.length]!;
        net.disconnect(peers[a]!.id, peers[b]!.id);
        break;
      }
      case 'heal': {
        const [a, b] = links[s.link % links.length]!;
        net.connect(peers[a]!.id, peers[b]!.id);
        break;
      }
      case 'healAll':
        c.healAll();
        break;
      case 'run':
        await net.runFor(s.ms);
        break;
      case 'maintain': {
        const at = peers[s.at % peers.length]!;
        at.store.compactLog(s.keep);
        at.store.collectTombstones(encodeHlc(net.time.now() - s.ttlMs, 0));
        at.replicator.sweepOrphans();
        break;
      }
      case 'restart':
        c.restart(s.at % peers.length, s.crash);
        break;
    }
    if (started && 'wait' in s && s.wait) {
      const t = started;
      await net.runUntil(() => t.done);
    }
  }
  return writes;
}

/**
 * Heals the mesh, lets every write finish and everything settle, and checks the outcome; with
 * `antiEntropy`, after letting one anti-entropy interval pass as well.
 */
async function healAndCheck(
  c: Cluster,
  writes: Tracked[],
  options: { antiEntropy?: boolean } = {},
): Promise<void> {
  c.healAll();
  await c.net.runUntil(() => writes.every((w) => w.done));
  await c.net.settle();
  if (options.antiEntropy) {
    await c.net.runFor(DEFAULT_OPTIONS.antiEntropyIntervalMs);
    await c.net.settle();
  }
  for (const w of writes) {
    if (w.error === undefined) continue;
    const code = w.error instanceof ShoalError ? w.error.code : String(w.error);
    assert.ok(EXPECTED_REFUSALS.has(code), `${w.label}: unexpected ${code}: ${(w.error as Error).message}`);
  }
  assertConverged(c.peers);
  for (const w of writes) {
    const outcome = w.outcome as WriteOutcome | undefined;
    if (!w.created || !outcome || outcome.seq === 0) continue;
    const { owner } = w.created;
    if (outcome.seq < owner.store.ownerState(owner.id).logFloor) continue; // Compacted away.
    // An accepted create is in its owner's log under the seq the writer was told.
    const [logged] = owner.store.opsAfter(owner.id, outcome.seq - 1, 1);
    assert.equal(logged?.node.id, w.created.id, `${w.label}: seq ${outcome.seq}`);
    assert.equal(logged?.kind, 'create');
  }
}

// --- The properties ----------------------------------------------------------------------------

describe('replication on a simulated mesh', () => {
  test('after partitions heal, every replica equals the union of the owners and the vectors agree', async () => {
    await fc.assert(
      fc.asyncProperty(
        topology,
        fc.array(step, { minLength: 8, maxLength: 40, size: 'medium' }),
        fc.integer(),
        fc.constantFrom(0, 0, 0.2),
        fc.integer({ min: 200, max: 1000 }),
        fc.integer({ min: 1, max: 4 }),
        // FULL: local writes wait for Store.syncLog (a microtask in memory) before they go out.
        fc.constantFrom<'FULL' | 'NORMAL'>('NORMAL', 'FULL'),
        async (topo, steps, seed, congestion, forwardTimeoutMs, batchOps, localSync) => {
          await withCluster(
            topo.n,
            topo.links,
            { seed, congestion },
            { forwardTimeoutMs, batchOps, localSync },
            async (c) => {
              // An fsync that takes a few ms of virtual time, so that commits land while one runs.
              if (localSync === 'FULL') {
                c.peers.forEach((p, i) => {
                  p.store.syncLog = (done) => setTimeout(() => done(null), 1 + ((i * 7 + seed) & 3));
                });
              }
              const writes = await runSteps(c, steps);
              await healAndCheck(c, writes);
              assertSeriesConverged(c.peers);
            },
          );
        },
      ),
      { numRuns: 150, includeErrorInReport: true },
    );
  });

  test('duplicated and reordered ops messages do not change the outcome', async () => {
    await fc.assert(
      fc.asyncProperty(
        topology,
        fc.array(step, { minLength: 8, maxLength: 30, size: 'medium' }),
        fc.integer(),
        fc.double({ min: 0.05, max: 0.5, noNaN: true }),
        fc.double({ min: 0.05, max: 0.5, noNaN: true }),
        fc.constantFrom(1000, 4, 0),
        async (topo, steps, seed, duplicateOps, reorderOps, maxPendingOps) => {
          await withCluster(
            topo.n,
            topo.links,
            { seed, duplicateOps, reorderOps },
            { batchOps: 2, maxPendingOps },
            async (c) => {
              const writes = await runSteps(c, steps);
              // An op past a gap that finds the hold-back buffer full is dropped and fetched again
              // on the next gap request, which is rate-limited per sender; when none comes, the
              // anti-entropy round gets it. With room to hold everything, no round is needed.
              await healAndCheck(c, writes, { antiEntropy: maxPendingOps < 1000 });
            },
          );
        },
      ),
      { numRuns: 80, includeErrorInReport: true },
    );
  });

  test('any delivery order of an op log, with duplicates, ends in the same state', async () => {
    // A source replica holds the logs of three owners; a fresh replica gets all their ops, in
    // random batches, shuffled, some more than once, straight into Replicator.message.
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 5, maxLength: 25 }),
        fc.integer(),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 8 }),
        async (steps, seed, duplicates, maxBatch) => {
          await withCluster(
            4,
            [
              [0, 1],
              [0, 2],
              [1, 2],
            ],
            { seed },
            {},
            async (c) => {
              const [source, , , fresh] = c.peers as [SimPeer, SimPeer, SimPeer, SimPeer];
              // Peer 3 is not linked and writes nothing: it hears only what is injected.
              const workload = steps
                .filter((s) => ['create', 'value', 'rename', 'delete', 'run'].includes(s.t))
                .map((s) => ('at' in s ? { ...s, at: s.at % 3 } : s))
                .map((s) => (s.t === 'create' ? { ...s, owner: s.owner % 3 } : s));
              const writes = await runSteps(c, workload);
              await c.net.runUntil(() => writes.every((w) => w.done));
              await c.net.settle();
              const ops: Op[] = c.peers.slice(0, 3).flatMap((p) => source.store.opsAfter(p.id, 0, 1_000_000));
              const random = seededRandom(seed);
              const order = ops.map((_, i) => i);
              for (let i = 0; i < ops.length * duplicates; i++) order.push(Math.floor(random() * ops.length));
              for (let i = order.length - 1; i > 0; i--) {
                const j = Math.floor(random() * (i + 1));
                [order[i], order[j]] = [order[j]!, order[i]!];
              }
              while (order.length > 0) {
                const batch = order.splice(0, 1 + Math.floor(random() * maxBatch)).map((i) => ops[i]!);
                c.net.inject(source.id, fresh.id, { t: 'ops', ops: batch });
              }
              await c.net.settle();
              const vv = fresh.replicator.versionVector();
              for (const p of c.peers.slice(0, 3))
                assert.equal(vv[p.id], source.store.ownerState(p.id).applied);
              assert.deepEqual(
                fresh.store.nodes().filter((n) => n.owner !== fresh.id),
                source.store.nodes(),
              );
              for (const op of ops)
                assert.deepEqual(fresh.store.node(op.node.id), source.store.node(op.node.id));
            },
          );
        },
      ),
      { numRuns: 30, includeErrorInReport: true },
    );
  });

  test('a replica cut off while the log was compacted catches up from a snapshot', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Topology>(
          {
            kind: 'full mesh',
            n: 3,
            links: [
              [0, 1],
              [0, 2],
              [1, 2],
            ],
          },
          {
            kind: 'chain',
            n: 3,
            links: [
              [0, 1],
              [1, 2],
            ],
          },
          {
            kind: 'chain',
            n: 4,
            links: [
              [0, 1],
              [1, 2],
              [2, 3],
            ],
          },
        ),
        fc.array(step, { minLength: 3, maxLength: 15 }),
        fc.array(step, { minLength: 3, maxLength: 20 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer(),
        async (topo, before, during, keep, seed) => {
          await withCluster(topo.n, topo.links, { seed }, {}, async (c) => {
            const noPartitions = (s: Step): boolean => s.t !== 'cut' && s.t !== 'heal' && s.t !== 'healAll';
            const writes = await runSteps(c, before.filter(noPartitions));
            await c.net.runUntil(() => writes.every((w) => w.done));
            await c.net.settle();
            // The last peer is cut off; the others work on and compact their logs.
            const lagging = c.peers[c.peers.length - 1]!;
            for (const other of c.peers) c.net.disconnect(lagging.id, other.id);
            const others = c.peers.slice(0, -1);
            const workload = during
              .filter(noPartitions)
              .map((s) => ('at' in s ? { ...s, at: s.at % others.length } : s))
              .map((s) => (s.t === 'create' ? { ...s, owner: s.owner % others.length } : s));
            writes.push(...(await runSteps(c, workload)));
            await c.net.runUntil(() => writes.every((w) => w.done));
            await c.net.settle();
            const laggingVv = lagging.replicator.versionVector();
            const behindCompaction = others.some(
              (o) => o.store.ownerState(o.id).applied - keep > (laggingVv[o.id] ?? 0),
            );
            for (const o of others) o.store.compactLog(keep);
            const snapsBefore = c.net.stats.delivered.snap ?? 0;
            await healAndCheck(c, writes);
            if (behindCompaction) {
              assert.ok((c.net.stats.delivered.snap ?? 0) > snapsBefore, 'a snapshot was sent');
              const received = await lagging.metrics.snapshots.get();
              assert.ok(
                received.values.some((v) => v.labels.direction === 'received' && v.value > 0),
                'the lagging replica applied a snapshot',
              );
            }
            assertSeriesConverged(c.peers, 'after the snapshot');
            // And it keeps up with ops after the snapshot.
            const after = await runSteps(c, workload.slice(0, 5));
            await healAndCheck(c, after);
            assertSeriesConverged(c.peers, 'after more ops');
          });
        },
      ),
      { numRuns: 25, includeErrorInReport: true },
    );
  });
});

describe('forwarded writes', () => {
  test('a write reaches the owner over several hops, and the writer reads it at once', async () => {
    const chain: [number, number][] = [
      [0, 1],
      [1, 2],
      [2, 3],
    ];
    await withCluster(4, chain, { seed: 1 }, {}, async (c) => {
      const [writer, , , owner] = c.peers as [SimPeer, SimPeer, SimPeer, SimPeer];
      const project = await c.net.resolve(
        writer.nodes.create({ type: 'Project', owner: owner.id, name: 'greenhouse' }),
      );
      assert.equal(project.owner, owner.id);
      assert.equal(project.parent, owner.id, 'under the owner by default');
      assert.deepEqual(writer.nodes.get(project.id), project, 'read-your-writes at the writer');
      const dp = await c.net.resolve(
        writer.nodes.create({ type: 'DataPoint', owner: owner.id, parent: project.id, name: 't', value: 1 }),
      );
      const updated = await c.net.resolve(writer.nodes.setValue(dp.id, 21.5));
      assert.equal(updated.value, 21.5);
      assert.equal(writer.nodes.get(dp.id).value, 21.5);
      assert.deepEqual(
        writer.events
          .filter((e) => e.type === 'node' && e.node.id === dp.id)
          .map((e) => e.type === 'node' && e.op),
        ['create', 'value'],
      );
      await assert.rejects(
        c.net.resolve(writer.nodes.create({ type: 'Project', owner: serverId(99), name: 'x' })),
        (err: unknown) => err instanceof ShoalError && err.code === 'SHOAL_BAD_REQUEST',
      );
      await assert.rejects(
        c.net.resolve(writer.nodes.setValue(project.id, 1)),
        (err: unknown) => err instanceof ShoalError && err.code === 'SHOAL_BAD_REQUEST',
        'the owner refuses a value for a Project, and the refusal comes back',
      );
      await c.net.settle();
      assertConverged(c.peers);
    });
  });

  test('a write to an owner cut off from the writer is refused with SHOAL_OWNER_UNREACHABLE', async () => {
    await withCluster(
      3,
      [
        [0, 1],
        [1, 2],
      ],
      { seed: 2 },
      {},
      async (c) => {
        const [writer, middle, owner] = c.peers as [SimPeer, SimPeer, SimPeer];
        const dp = await c.net.resolve(owner.nodes.create({ type: 'DataPoint', name: 'dp' }));
        await c.net.settle();
        c.net.disconnect(middle.id, owner.id);
        await c.net.settle();
        const started = c.net.time.now();
        await assert.rejects(
          c.net.resolve(writer.nodes.setValue(dp.id, 5)),
          (err: unknown) => err instanceof ShoalError && err.code === 'SHOAL_OWNER_UNREACHABLE',
        );
        assert.equal(c.net.time.now() - started, 0, 'refused at once: no route');
        c.healAll();
        await c.net.settle();
        assertConverged(c.peers);
        assert.equal(valueOps(owner, dp.id, 5), 0);
      },
    );
  });

  test('a write caught by a partition on its way is refused or applied, never applied twice', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 5 }),
        fc.nat({ max: 12 }),
        fc.nat({ max: 10 }),
        fc.boolean(),
        fc.integer({ min: 200, max: 1000 }),
        fc.integer(),
        async (n, cutAfter, cutLink, duplicateWrites, forwardTimeoutMs, seed) => {
          const chain = Array.from({ length: n - 1 }, (_, i): [number, number] => [i, i + 1]);
          await withCluster(n, chain, { seed }, { forwardTimeoutMs }, async (c) => {
            const writer = c.peers[0]!;
            const owner = c.peers[n - 1]!;
            const dp = await c.net.resolve(owner.nodes.create({ type: 'DataPoint', name: 'dp' }));
            await c.net.settle();
            let delivered = 0;
            const [a, b] = chain[cutLink % chain.length]!;
            c.net.beforeDeliver = (from, to, message) => {
              if (delivered++ === cutAfter) c.net.disconnect(c.peers[a]!.id, c.peers[b]!.id);
              if (duplicateWrites && message.t === 'write' && to === owner.id) {
                c.net.inject(from, to, message); // The same request (same rid) again.
              }
            };
            const started = c.net.time.now();
            const result = await c.net.resolve(writer.nodes.setValue(dp.id, 42)).then(
              (node) => ({ ok: true as const, node }),
              (error: unknown) => ({ ok: false as const, error }),
            );
            c.net.beforeDeliver = undefined;
            if (result.ok) {
              assert.equal(result.node.value, 42);
            } else {
              assert.ok(result.error instanceof ShoalError, String(result.error));
              assert.equal(result.error.code, 'SHOAL_OWNER_UNREACHABLE');
              assert.ok(c.net.time.now() - started <= forwardTimeoutMs, 'within the forward timeout');
            }
            c.healAll();
            await c.net.settle();
            assertConverged(c.peers);
            const applied = valueOps(owner, dp.id, 42);
            assert.ok(applied <= 1, `applied ${applied} times`);
            if (result.ok) assert.equal(applied, 1);
          });
        },
      ),
      { numRuns: 100, includeErrorInReport: true },
    );
  });

  test('a retried forwarded write (same request id) is applied once', async () => {
    await withCluster(2, [[0, 1]], { seed: 3 }, {}, async (c) => {
      const [writer, owner] = c.peers as [SimPeer, SimPeer];
      const dp = await c.net.resolve(owner.nodes.create({ type: 'DataPoint', name: 'dp' }));
      await c.net.settle();
      const write: LinkMessage = {
        t: 'write',
        rid: 'retry-1',
        from: writer.id,
        to: owner.id,
        ttl: 16,
        req: { kind: 'value', id: dp.id, value: 7 },
      };
      const answers: LinkMessage[] = [];
      c.net.beforeDeliver = (_from, to, message) => {
        if (to === writer.id && message.t === 'wres') answers.push(message);
      };
      c.net.inject(writer.id, owner.id, write);
      c.net.inject(writer.id, owner.id, write);
      await c.net.settle();
      c.net.inject(writer.id, owner.id, write);
      await c.net.settle();
      assert.equal(valueOps(owner, dp.id, 7), 1);
      const seq = owner.store.ownerState(owner.id).applied;
      assert.equal(answers.length, 3, 'each copy is answered');
      for (const answer of answers) {
        assert.ok(answer.t === 'wres' && answer.ok, 'accepted');
        assert.equal(answer.seq, seq, 'with the seq of the one op it made');
      }
      assertConverged(c.peers);
    });
  });
});

describe('deletes across owners', () => {
  const pair: [number, number][] = [[0, 1]];

  test("deleting a node deletes the other owners' nodes below it, when its tombstone reaches them", async () => {
    await withCluster(2, pair, { seed: 5 }, {}, async (c) => {
      const { a, b, project, dp } = await gardenWithSoil(c);
      c.net.disconnect(a.id, b.id);
      await c.net.resolve(a.nodes.delete(project.id));
      assert.deepEqual(a.store.nodes({ type: 'DataPoint' }), [], "b's data point disappears at once at a");
      assert.equal(a.store.node(dp.id)?.deleted, false, 'but only b deletes it');
      c.healAll();
      await c.net.settle();
      for (const p of c.peers) assert.equal(p.store.node(dp.id)?.deleted, true, `${p.name}: tombstone`);
      assertConverged(c.peers);
    });
  });

  test("a snapshot that no longer holds a deleted parent still deletes this owner's nodes below it", async () => {
    await withCluster(2, pair, { seed: 6 }, {}, async (c) => {
      // The tombstone's op is gone, and the tombstone collected: b gets a snapshot without it.
      const { b, project, dp } = await deletedWhileAway(c, true);
      assert.equal(b.store.node(project.id), undefined);
      for (const p of c.peers) {
        assert.equal(p.store.node(dp.id)?.deleted, true, `${p.name}: the orphan is deleted by its owner`);
      }
      assert.equal(b.store.counts().nodes, 2, 'the two Server nodes');
      assertConverged(c.peers);
    });
  });

  test('a snapshot carries the deleted nodes not yet collected, as deleted', async () => {
    await withCluster(2, pair, { seed: 8 }, {}, async (c) => {
      const { b, project, dp } = await deletedWhileAway(c, false);
      assert.equal(b.store.node(project.id)?.deleted, true, 'the tombstone came with it');
      for (const p of c.peers) assert.equal(p.store.node(dp.id)?.deleted, true, p.name);
      assertConverged(c.peers);
    });
  });

  test('sweepOrphans finishes a cascade that was interrupted', async () => {
    await withCluster(2, pair, { seed: 7 }, {}, async (c) => {
      const { a, b, project, dp } = await gardenWithSoil(c);
      b.replicator.stop(); // The tombstone arrives, but b cannot write its cascade.
      await c.net.resolve(a.nodes.delete(project.id));
      await c.net.settle();
      assert.equal(b.store.node(project.id)?.deleted, true);
      assert.equal(b.store.node(dp.id)?.deleted, false);
      b.replicator.start();
      b.replicator.sweepOrphans();
      await c.net.settle();
      for (const p of c.peers) assert.equal(p.store.node(dp.id)?.deleted, true, p.name);
      assertConverged(c.peers);
    });
  });
});

describe('durable local writes (localSync FULL)', () => {
  /** Holds every fsync of `peer`'s store until released (the real one runs in libuv's pool). */
  function holdSyncs(peer: SimPeer): { held: () => number; release: (err?: Error) => void } {
    const held: ((err: Error | null) => void)[] = [];
    peer.store.syncLog = (done) => {
      held.push(done);
    };
    return {
      held: () => held.length,
      release: (err) => {
        for (const done of held.splice(0)) done(err ?? null);
      },
    };
  }

  const projects = (p: SimPeer): string[] =>
    p.store
      .nodes({ type: 'Project' })
      .map((n) => n.name)
      .sort();

  test('a write is answered, evented and sent only after its fsync; one fsync covers the commits made meanwhile', async () => {
    await withCluster(2, [[0, 1]], { seed: 11 }, { localSync: 'FULL' }, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      const syncs = holdSyncs(a);
      const before = a.store.ownerState(a.id).applied;
      const answered: string[] = [];
      const write = (name: string) =>
        a.nodes.create({ type: 'Project', name }).then((node) => {
          answered.push(name);
          return node;
        });
      const one = write('one');
      await c.net.runFor(50);
      const two = write('two'); // Committed while the fsync of 'one' runs.
      await c.net.runFor(50);
      assert.equal(a.store.ownerState(a.id).applied, before + 2, 'both writes are committed');
      assert.equal(syncs.held(), 1, 'one fsync runs at a time');
      assert.deepEqual(answered, []);
      assert.equal(a.replicator.versionVector()[a.id], before, 'our vector counts durable ops only');
      assert.equal(a.events.filter((e) => e.type === 'node' && e.node.type === 'Project').length, 0);
      assert.deepEqual(projects(b), [], 'nothing went to the peer');

      syncs.release(); // The fsync of 'one' returns; the next one, for 'two', starts.
      await c.net.runFor(50);
      assert.deepEqual(answered, ['one']);
      assert.equal(syncs.held(), 1);
      assert.deepEqual(projects(b), ['one']);

      syncs.release();
      await c.net.resolve(Promise.all([one, two]));
      await c.net.settle();
      assert.deepEqual(answered, ['one', 'two']);
      assert.deepEqual(projects(b), ['one', 'two']);
      assertConverged(c.peers);
    });
  });

  test("a commit that raises after committing (SQLite's checkpoint failed) is a disk failure", async () => {
    await withCluster(2, [[0, 1]], { seed: 15 }, { localSync: 'FULL' }, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      const transaction = a.store.transaction.bind(a.store);
      let failNext = true;
      a.store.transaction = ((sync, fn) => {
        const result = transaction(sync, fn);
        if (failNext) {
          failNext = false;
          throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_FSYNC' });
        }
        return result;
      }) as typeof a.store.transaction;
      await assert.rejects(
        c.net.resolve(a.nodes.create({ type: 'Project', name: 'unsure' })),
        (err: ShoalError) => err.code === 'SHOAL_DATA_DIR' && /may or may not be stored/.test(err.message),
      );
      await assert.rejects(
        c.net.resolve(a.nodes.create({ type: 'Project', name: 'later' })),
        (err: ShoalError) => err.code === 'SHOAL_DATA_DIR' && /until it restarts/.test(err.message),
      );
      await c.net.settle();
      assert.deepEqual(projects(a), ['unsure']);
      assert.deepEqual(projects(b), [], 'nothing of it leaves');
      c.restart(0);
      await c.net.settle();
      assert.deepEqual(projects(b), ['unsure']);
      assertConverged(c.peers);
    });
  });

  /**
   * b, cut off, misses a's durable 'one' (and its log too, with `compact`); then a commits 'two',
   * its fsync held, and the two link again (anti-entropy: b tells a what it has).
   */
  async function behindWhileSyncing(c: Cluster, compact: boolean) {
    const [a, b] = c.peers as [SimPeer, SimPeer];
    c.net.disconnect(a.id, b.id);
    await c.net.resolve(a.nodes.create({ type: 'Project', name: 'one' }));
    if (compact) a.store.compactLog(0); // b lacks ops no longer in the log: it needs a snapshot.
    const syncs = holdSyncs(a);
    const two = a.nodes.create({ type: 'Project', name: 'two' });
    await c.net.runFor(50);
    c.net.connect(a.id, b.id);
    await c.net.runFor(500);
    return { a, b, syncs, two };
  }

  test('a peer catching up from the log gets our ops up to the last fsync only', async () => {
    await withCluster(2, [[0, 1]], { seed: 13 }, { localSync: 'FULL' }, async (c) => {
      const { b, syncs, two } = await behindWhileSyncing(c, false);
      assert.deepEqual(projects(b), ['one']);
      syncs.release();
      await c.net.resolve(two);
      await c.net.settle();
      assert.deepEqual(projects(b), ['one', 'two']);
      assertConverged(c.peers);
    });
  });

  test('a snapshot of our nodes is taken at once and sent when the commits in it are durable', async () => {
    await withCluster(2, [[0, 1]], { seed: 14 }, { localSync: 'FULL' }, async (c) => {
      const { a, b, syncs, two } = await behindWhileSyncing(c, true);
      assert.deepEqual(projects(b), [], 'no snapshot while a commit in it waits for its fsync');
      // The writer stays busy: a commit during every fsync. The snapshot must not wait for a
      // moment with none.
      const three = a.nodes.create({ type: 'Project', name: 'three' });
      await c.net.runFor(50);
      syncs.release(); // 'two' durable; the next fsync covers 'three' and the snapshot's wait.
      await c.net.runFor(50);
      const four = a.nodes.create({ type: 'Project', name: 'four' });
      await c.net.runFor(50);
      syncs.release();
      await c.net.runFor(500);
      assert.deepEqual(projects(b), ['one', 'three', 'two'], "the snapshot and 'three', not 'four' yet");
      syncs.release();
      await c.net.resolve(Promise.all([two, three, four]));
      await c.net.settle();
      assert.deepEqual(projects(b), ['four', 'one', 'three', 'two']);
      assertConverged(c.peers);
    });
  });

  test('a failed fsync refuses its writes and all later ones; its ops stay here until a restart', async () => {
    await withCluster(2, [[0, 1]], { seed: 12 }, { localSync: 'FULL' }, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      const syncs = holdSyncs(a);
      const failed = assert.rejects(
        a.nodes.create({ type: 'Project', name: 'unsure' }),
        (err: ShoalError) => err.code === 'SHOAL_DATA_DIR' && /may or may not be stored/.test(err.message),
      );
      await c.net.runFor(50);
      // Committed while that fsync runs: the failure refuses it too.
      const queued = assert.rejects(
        a.nodes.create({ type: 'Project', name: 'queued' }),
        (err: ShoalError) => err.code === 'SHOAL_DATA_DIR',
      );
      await c.net.runFor(50);
      // Taken before the failure, its commit due after it: refused, and not stored at all.
      const late = assert.rejects(
        a.nodes.create({ type: 'Project', name: 'late' }),
        (err: ShoalError) => err.code === 'SHOAL_DATA_DIR' && /until it restarts/.test(err.message),
      );
      syncs.release(new Error('EIO: i/o error, fdatasync'));
      await c.net.resolve(Promise.all([failed, queued, late]));
      assert.equal(syncs.held(), 0, 'no fsync after a failed one');
      await assert.rejects(
        c.net.resolve(a.nodes.create({ type: 'Project', name: 'later' })),
        (err: ShoalError) => err.code === 'SHOAL_DATA_DIR' && /until it restarts/.test(err.message),
      );
      await c.net.settle();
      assert.deepEqual(projects(b), [], 'an op not known durable never leaves');
      assert.deepEqual(projects(a), ['queued', 'unsure'], 'those committed are in the store all the same');

      // A new replicator on the store (a restart, whose store fsyncs its log when it opens)
      // counts what the store holds as durable.
      c.restart(0);
      await c.net.settle();
      assert.deepEqual(projects(b), ['queued', 'unsure']);
      assertConverged(c.peers);
    });
  });
});

describe('an owner on an older copy of its data', () => {
  test('gets its own ops back from the mesh, refuses writes until it has them, then numbers on', async () => {
    await withCluster(3, TRIANGLE, { seed: 21 }, {}, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer, SimPeer];
      for (const name of ['one', 'two', 'three'])
        await c.net.resolve(a.nodes.create({ type: 'Project', name }));
      await c.net.settle();
      const held = a.store.ownerState(a.id).applied;

      // a's disk dies; it comes back on an empty store (its backup predates everything).
      for (const other of c.net.neighbours(a.id)) c.net.disconnect(a.id, other);
      a.replicator.stop();
      a.store.close();
      a.store = new Store(':memory:');
      boot(c.net, a, c.peers, DEFAULT_OPTIONS);
      assert.equal(a.store.ownerState(a.id).applied, 0);
      c.net.connect(a.id, b.id);
      // b's version vector reaches a first: a learns it is behind and refuses writes meanwhile.
      c.net.inject(b.id, a.id, { t: 'vv', vv: b.replicator.versionVector() });
      await assert.rejects(
        c.net.resolve(
          a.replicator.write(a.id, {
            kind: 'create',
            node: { id: c.newId(), type: 'Project', parent: null, name: 'too early', meta: {} },
          }),
        ),
        (err: ShoalError) => err.code === 'SHOAL_OVERLOADED' && /older copy/.test(err.message),
      );
      await c.net.settle();
      assert.equal(a.store.ownerState(a.id).applied, held, 'its own ops came back');
      c.healAll();
      await c.net.settle();

      // New writes are numbered after them, so every replica applies them.
      const four = await c.net.resolve(a.nodes.create({ type: 'Project', name: 'four' }));
      assert.equal(four.version, held + 1);
      await c.net.settle();
      for (const p of c.peers) {
        assert.deepEqual(
          p.store
            .nodes({ type: 'Project' })
            .map((n) => n.name)
            .sort(),
          ['four', 'one', 'three', 'two'],
          p.name,
        );
      }
      assertConverged(c.peers);
    });
  });
});

describe('holding local writes after a start', () => {
  const names = (p: SimPeer) =>
    p.store
      .nodes({ type: 'Project' })
      .map((n) => n.name)
      .sort();

  /** Every peer shows exactly these projects, and the replicas have converged. */
  function everyoneHas(c: Cluster, projects: string[]): void {
    for (const p of c.peers) assert.deepEqual(names(p), projects, p.name);
    assertConverged(c.peers);
  }

  /** A copy of `from`'s store as a backup would hold it: the ops of `owners` it has now. */
  function backupOf(from: SimPeer, owners: string[]): Store {
    const backup = new Store(':memory:');
    backup.transaction('NORMAL', () => {
      for (const owner of owners) for (const op of from.store.opsAfter(owner, 0, 1000)) backup.applyOp(op);
    });
    return backup;
  }

  /**
   * a and b write, and a copy of a's store is taken (what a backup would hold); then a writes two
   * more, with c away when `cAway`. The copy lacks those, b has them, and c unless away.
   */
  async function copyThenMore(c: Cluster, cAway: boolean): Promise<{ backup: Store; held: number }> {
    const [a, b, cc] = c.peers as [SimPeer, SimPeer, SimPeer];
    await c.net.resolve(a.nodes.create({ type: 'Project', name: 'one' }));
    await c.net.resolve(b.nodes.create({ type: 'Project', name: 'of b' }));
    await c.net.settle();
    const backup = backupOf(a, [a.id, b.id]);
    if (cAway) {
      c.net.disconnect(cc.id, a.id);
      c.net.disconnect(cc.id, b.id);
    }
    for (const name of ['two', 'three']) await c.net.resolve(a.nodes.create({ type: 'Project', name }));
    await c.net.settle();
    return { backup, held: a.store.ownerState(a.id).applied };
  }

  /** A promise, and what it resolved to so far. */
  function watched<T>(promise: Promise<T>): { promise: Promise<T>; value: () => T | undefined } {
    let value: T | undefined;
    void promise.then((v) => {
      value = v;
    });
    return { promise, value: () => value };
  }

  /** Stops peer 0, unlinked, and boots it again on `store`. */
  function restartOn(c: Cluster, store: Store): SimPeer {
    const a = c.peers[0]!;
    for (const other of c.net.neighbours(a.id)) c.net.disconnect(a.id, other);
    a.replicator.stop();
    a.store.close();
    a.store = store;
    boot(c.net, a, c.peers, DEFAULT_OPTIONS);
    return a;
  }

  test('an owner back on an older copy holds a write made before any neighbour is reached, then numbers it after the mesh', async () => {
    await withCluster(3, TRIANGLE, { seed: 22 }, {}, async (c) => {
      const [a] = c.peers as [SimPeer, SimPeer, SimPeer];
      const { backup, held } = await copyThenMore(c, false);
      assert.ok(held > backup.ownerState(a.id).applied);

      restartOn(c, backup);
      assert.equal(a.replicator.holdingWrites, true, 'it has met other servers: it holds');
      const four = watched(a.nodes.create({ type: 'Project', name: 'four' }));
      await c.net.runFor(100);
      assert.equal(four.value(), undefined, 'the write waits: no neighbour has told how far its ops go');
      c.healAll();
      const node = await c.net.resolve(four.promise);
      assert.equal(node.version, held + 1, 'numbered after the ops the mesh held');
      assert.equal(a.replicator.holdingWrites, false);
      await c.net.settle();
      everyoneHas(c, ['four', 'of b', 'one', 'three', 'two']);
    });
  });

  test('a neighbour that is behind too does not end the hold while another is reachable through it', async () => {
    await withCluster(3, TRIANGLE, { seed: 24 }, {}, async (c) => {
      const [a, b, cc] = c.peers as [SimPeer, SimPeer, SimPeer];
      const { backup, held } = await copyThenMore(c, true);

      restartOn(c, backup);
      c.net.connect(b.id, cc.id);
      c.net.connect(a.id, cc.id); // c, as far behind as a's copy, links first.
      const four = watched(a.nodes.create({ type: 'Project', name: 'four' }));
      await c.net.runFor(100);
      assert.equal(
        four.value(),
        undefined,
        'b is reachable through c but has not been heard: the write waits',
      );
      c.net.connect(a.id, b.id);
      const node = await c.net.resolve(four.promise);
      assert.equal(node.version, held + 1, 'numbered after the ops b held');
      await c.net.settle();
      everyoneHas(c, ['four', 'of b', 'one', 'three', 'two']);
    });
  });

  test('a write forwarded to a held owner is refused, not written, before its sender gives up; taken after the hold', async () => {
    // a-b-c in a line: c is reached through b only, so a's hold lasts restartHoldMs.
    const line: [number, number][] = [
      [0, 1],
      [1, 2],
    ];
    await withCluster(3, line, { seed: 26 }, {}, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer, SimPeer];
      await c.net.resolve(b.nodes.create({ type: 'Project', name: 'of b' }));
      await c.net.settle();
      c.restart(0);
      assert.equal(a.replicator.holdingWrites, true);
      // a's refusal, not b's own timeout (SHOAL_OWNER_UNREACHABLE after forwardTimeoutMs).
      await assert.rejects(
        c.net.resolve(b.nodes.create({ type: 'Project', name: 'too early', owner: a.id })),
        (err: ShoalError) =>
          err.code === 'SHOAL_OVERLOADED' && /catching up.*nothing was written/.test(err.message),
      );
      await c.net.runFor(DEFAULT_OPTIONS.restartHoldMs);
      assert.equal(a.replicator.holdingWrites, false);
      await c.net.resolve(b.nodes.create({ type: 'Project', name: 'later', owner: a.id }));
      await c.net.settle();
      for (const p of c.peers) assert.deepEqual(names(p), ['later', 'of b'], p.name);
    });
  });

  test('a vector that shows ops of ours missing after the hold ended holds the writes again, while the start allows', async () => {
    await withCluster(3, TRIANGLE, { seed: 27 }, {}, async (c) => {
      const [a, b, cc] = c.peers as [SimPeer, SimPeer, SimPeer];
      const { backup, held } = await copyThenMore(c, true);

      // a comes back on its copy next to c alone, which is as far behind: the hold ends.
      restartOn(c, backup);
      c.net.connect(a.id, cc.id);
      await c.net.runFor(20);
      assert.equal(a.replicator.holdingWrites, false);
      // A write is queued, and b's vector arrives before its commit.
      const four = watched(a.nodes.create({ type: 'Project', name: 'four' }));
      // So is a write forwarded by c: queued before the hold began again, refused when overdue.
      const [one] = a.store.opsAfter(a.id, 0, 1);
      const early = c.newId();
      c.net.inject(cc.id, a.id, {
        t: 'write',
        rid: 'forwarded-early',
        from: cc.id,
        to: a.id,
        ttl: 16,
        req: { kind: 'create', node: { ...one!.node, id: early, name: 'forwarded early' } },
      });
      c.net.inject(b.id, a.id, { t: 'vv', vv: b.replicator.versionVector() });
      await c.net.runFor(50);
      assert.equal(four.value(), undefined, 'held again, not refused');
      assert.equal(a.replicator.holdingWrites, true);
      // A write forwarded meanwhile is refused unwritten before its sender gives up.
      const forwarded = cc.nodes.create({ type: 'Project', name: 'forwarded', owner: a.id });
      forwarded.catch(() => {});
      await c.net.runFor(DEFAULT_OPTIONS.forwardTimeoutMs - 50);
      await assert.rejects(
        forwarded,
        (err: ShoalError) => err.code === 'SHOAL_OVERLOADED' && /nothing was written/.test(err.message),
      );
      c.net.connect(a.id, b.id);
      const node = await c.net.resolve(four.promise);
      assert.equal(node.version, held + 1, 'numbered after the ops b held');
      c.healAll();
      await c.net.settle();
      for (const p of c.peers) assert.deepEqual(names(p), ['four', 'of b', 'one', 'three', 'two'], p.name);
      assert.equal(
        a.store.node(early)?.name,
        undefined,
        'the early forwarded write was refused, not written',
      );
      assertConverged(c.peers);
      for (const p of c.peers) assert.deepEqual(p.errors, [], p.name);
    });
  });

  test('an op received under a number held with another stamp is reported once (its owner reused the number)', async () => {
    await withCluster(2, [[0, 1]], { seed: 28 }, {}, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'one' }));
      await c.net.settle();
      const [first] = b.store.opsAfter(a.id, 0, 1);
      const other: Op = {
        ...first!,
        hlc: encodeHlc(c.net.time.now() + 1000, 0),
        node: { ...first!.node, name: 'other' },
      };
      c.net.inject(a.id, b.id, { t: 'ops', ops: [other] });
      c.net.inject(a.id, b.id, { t: 'ops', ops: [other] });
      c.net.inject(a.id, b.id, { t: 'ops', ops: [first!] });
      assert.equal(b.errors.length, 1, b.errors.join('\n'));
      assert.match(b.errors[0]!, /numbered two different changes alike/);
      assert.deepEqual(names(b), ['one'], 'the first stays');
    });
  });

  test('held writes count towards maxPendingWrites; stop refuses those held', async () => {
    await withCluster(2, [[0, 1]], { seed: 25 }, { maxPendingWrites: 2 }, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      await c.net.resolve(b.nodes.create({ type: 'Project', name: 'of b' }));
      await c.net.settle();
      c.net.disconnect(a.id, b.id);
      a.replicator.stop();
      boot(c.net, a, c.peers, { ...DEFAULT_OPTIONS, maxPendingWrites: 2 });
      const held = [1, 2].map((i) => a.nodes.create({ type: 'Project', name: `held ${i}` }));
      for (const p of held) p.catch(() => {});
      await assert.rejects(
        a.nodes.create({ type: 'Project', name: 'one too many' }),
        (err: ShoalError) => err.code === 'SHOAL_OVERLOADED' && /more than 2 writes/.test(err.message),
      );
      a.replicator.stop();
      for (const p of held)
        await assert.rejects(
          p,
          (err: ShoalError) => err.code === 'SHOAL_OVERLOADED' && /shutting down/.test(err.message),
        );
      assert.deepEqual(names(a), ['of b'], 'nothing held was stored');
    });
  });

  test('with no neighbour reachable the hold ends after restartHoldMs; a server that never met another holds nothing', async () => {
    await withCluster(2, [[0, 1]], { seed: 23 }, {}, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      assert.equal(a.replicator.holdingWrites, false, 'a new server takes writes at once');
      await c.net.resolve(b.nodes.create({ type: 'Project', name: 'of b' }));
      await c.net.settle();
      const store = a.store;
      // A clean restart on the same store, while b is away.
      for (const other of c.net.neighbours(a.id)) c.net.disconnect(a.id, other);
      a.replicator.stop();
      boot(c.net, a, c.peers, DEFAULT_OPTIONS);
      assert.equal(a.store, store);
      assert.equal(a.replicator.holdingWrites, true);
      const asked = c.net.time.now();
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'alone' }));
      assert.ok(
        c.net.time.now() - asked >= DEFAULT_OPTIONS.restartHoldMs,
        `answered after ${c.net.time.now() - asked} ms`,
      );
      c.healAll();
      await c.net.settle();
      assert.deepEqual(names(b), ['alone', 'of b']);
      assertConverged(c.peers);
    });
  });

  /** An op of `owner` as `peer` holds it under `seq`. */
  const stampOf = (peer: SimPeer, owner: string, seq: number): string | undefined =>
    peer.store.opsAfter(owner, seq - 1, 1, seq)[0]?.hlc;

  test('a copy that numbered writes alike while alone merges with the mesh when it meets a holder of the later ops', async () => {
    await withCluster(3, TRIANGLE, { seed: 29 }, {}, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer, SimPeer];
      const { backup, held } = await copyThenMore(c, false);
      const copied = backup.ownerState(a.id).applied;
      const later = stampOf(b, a.id, copied + 1);

      // Back on its copy with no one reachable: the hold ends and it numbers on from the copy.
      restartOn(c, backup);
      const four = await c.net.resolve(a.nodes.create({ type: 'Project', name: 'four' }));
      assert.equal(four.version, copied + 1, 'the number b holds another op under');
      assert.notEqual(stampOf(a, a.id, copied + 1), later);

      c.healAll();
      await c.net.settle();
      everyoneHas(c, ['four', 'of b', 'one', 'three', 'two']);
      assert.ok(a.store.ownerState(a.id).applied > held, 'numbered on past both');
      assert.equal((await a.metrics.forksMended.get()).values[0]?.value, 1, 'one fork mended');
      const five = await c.net.resolve(a.nodes.create({ type: 'Project', name: 'five' }));
      await c.net.settle();
      for (const p of c.peers) assert.ok(p.store.node(five.id), `${p.name} has a write made after`);
      assertConverged(c.peers);
      for (const p of c.peers) assert.deepEqual(p.errors, [], p.name);
    });
  });

  test('property: whatever a copy and the mesh wrote apart, whomever the copy meets first, all end equal with both', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 4 }),
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 4 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer(),
        async (
          n,
          before,
          lost,
          alone,
          away,
          meetAwayFirst,
          reboot,
          bLeavesAfter,
          compact,
          deleteOld,
          seed,
        ) => {
          const all: [number, number][] = [];
          for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) all.push([i, j]);
          await withCluster(n, all, { seed }, {}, async (c) => {
            const [a, b] = c.peers as [SimPeer, SimPeer];
            const expected = ['of b'];
            const point = await c.net.resolve(
              a.nodes.create({ type: 'DataPoint', name: 'point', meta: { kind: 'number' } }),
            );
            await c.net.resolve(b.nodes.create({ type: 'Project', name: 'of b' }));
            for (let i = 0; i < before; i++) {
              await c.net.resolve(a.nodes.create({ type: 'Project', name: `before ${i}` }));
              expected.push(`before ${i}`);
            }
            await c.net.settle();
            const backup = backupOf(
              a,
              c.peers.map((p) => p.id),
            );
            // Written after the backup: b holds them, and each other server unless away. When a
            // third server is there to hold them all, b may leave part way (holding fewer).
            const awayPeers = c.peers.slice(2).filter((_, i) => away[i]);
            for (const p of awayPeers) for (const q of c.peers) if (q !== p) c.net.disconnect(p.id, q.id);
            const fullHolder = c.peers.slice(2).some((_, i) => !away[i]);
            if (deleteOld && before > 0) {
              const old = a.store.nodes({ type: 'Project' }).find((x) => x.name === 'before 0')!;
              await c.net.resolve(a.nodes.delete(old.id));
              expected.splice(expected.indexOf('before 0'), 1);
            }
            for (let i = 0; i < lost; i++) {
              if (fullHolder && i === bLeavesAfter) for (const q of c.peers) c.net.disconnect(b.id, q.id);
              if (i % 2 === 0) {
                await c.net.resolve(a.nodes.create({ type: 'Project', name: `lost ${i}` }));
                expected.push(`lost ${i}`);
              } else await c.net.resolve(a.nodes.setValue(point.id, 100 + i));
            }
            await c.net.settle();
            // Holders whose logs were compacted can only send snapshots.
            if (compact) for (const p of c.peers.slice(1)) p.store.compactLog(0);

            // a's disk dies; its copy comes back, alone or next to the servers that were away.
            restartOn(c, backup);
            if (meetAwayFirst) for (const p of awayPeers) c.net.connect(a.id, p.id);
            await c.net.runFor(DEFAULT_OPTIONS.restartHoldMs);
            let last: number | undefined;
            for (let i = 0; i < alone; i++) {
              if (i % 2 === 0) {
                await c.net.resolve(a.nodes.create({ type: 'Project', name: `alone ${i}` }));
                expected.push(`alone ${i}`);
              } else {
                last = 200 + i;
                await c.net.resolve(a.nodes.setValue(point.id, last));
              }
            }
            if (reboot) {
              for (const other of c.net.neighbours(a.id)) c.net.disconnect(a.id, other);
              a.replicator.stop();
              boot(c.net, a, c.peers, DEFAULT_OPTIONS);
              await c.net.runFor(DEFAULT_OPTIONS.restartHoldMs);
            }
            // b first (it may hold fewer of the lost writes than a third server), then everyone.
            c.net.connect(a.id, b.id);
            await c.net.settle();
            c.healAll();
            await c.net.settle();
            for (const p of c.peers) {
              assert.deepEqual(names(p), expected.sort(), p.name);
              // The newer change wins: the copy's, made later, when it set the value at all.
              if (last !== undefined) assert.equal(p.store.node(point.id)?.value, last, p.name);
            }
            assertConverged(c.peers);
          });
        },
      ),
      { numRuns: 100, includeErrorInReport: true },
    );
  });

  test('a fork is found after a restart too: the stamps tell it, not what one run numbered', async () => {
    await withCluster(3, TRIANGLE, { seed: 33 }, {}, async (c) => {
      const [a] = c.peers as [SimPeer, SimPeer, SimPeer];
      const { backup } = await copyThenMore(c, false);
      restartOn(c, backup);
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'four' }));
      // A reboot while still alone: the next run has numbered nothing yet when it meets b.
      a.replicator.stop();
      boot(c.net, a, c.peers, DEFAULT_OPTIONS);
      await c.net.runFor(DEFAULT_OPTIONS.restartHoldMs);
      c.healAll();
      await c.net.settle();
      everyoneHas(c, ['four', 'of b', 'one', 'three', 'two']);
    });
  });

  test('a fork is found in a snapshot too, when the holders compacted the ops the stamps would compare', async () => {
    await withCluster(3, TRIANGLE, { seed: 34 }, {}, async (c) => {
      const [a, b, cc] = c.peers as [SimPeer, SimPeer, SimPeer];
      const { backup } = await copyThenMore(c, false);
      for (const p of [b, cc]) p.store.compactLog(0);
      restartOn(c, backup);
      await c.net.runFor(DEFAULT_OPTIONS.restartHoldMs);
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'four' }));
      c.healAll();
      await c.net.settle();
      everyoneHas(c, ['four', 'of b', 'one', 'three', 'two']);
      assert.equal((await a.metrics.forksMended.get()).values[0]?.value, 1, 'one fork mended');
    });
  });

  test('a copy that wrote nothing takes a snapshot of its later changes as it is, deletes included: no fork', async () => {
    await withCluster(3, TRIANGLE, { seed: 35 }, {}, async (c) => {
      const [a, b, cc] = c.peers as [SimPeer, SimPeer, SimPeer];
      const { backup } = await copyThenMore(c, false);
      const one = a.store.nodes({ type: 'Project' }).find((n) => n.name === 'one')!;
      await c.net.resolve(a.nodes.delete(one.id));
      await c.net.settle();
      for (const p of [b, cc]) p.store.compactLog(0);
      restartOn(c, backup);
      c.healAll();
      await c.net.settle();
      everyoneHas(c, ['of b', 'three', 'two']);
      assert.equal((await a.metrics.forksMended.get()).values[0]?.value ?? 0, 0, 'no fork');
    });
  });

  test('a holder of more of the other history, back after a fork was mended, is found and merged too', async () => {
    await withCluster(3, TRIANGLE, { seed: 36 }, {}, async (c) => {
      const [a, b, cc] = c.peers as [SimPeer, SimPeer, SimPeer];
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'one' }));
      await c.net.settle();
      const backup = backupOf(a, [a.id]);
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'two' }));
      await c.net.settle();
      // b goes; c gets one more.
      c.net.disconnect(a.id, b.id);
      c.net.disconnect(b.id, cc.id);
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'three' }));
      await c.net.settle();
      c.net.disconnect(a.id, cc.id);
      // a's copy, alone, writes; then meets b (mended), and only later c, who holds more.
      restartOn(c, backup);
      await c.net.runFor(DEFAULT_OPTIONS.restartHoldMs);
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'four' }));
      c.net.connect(a.id, b.id);
      await c.net.settle();
      assert.deepEqual(names(a), ['four', 'one', 'two']);
      c.healAll();
      await c.net.settle();
      everyoneHas(c, ['four', 'one', 'three', 'two']);
      assert.equal((await a.metrics.forksMended.get()).values[0]?.value, 2, 'two forks mended');
    });
  });

  test('a fork inside what the mesh holds is found by the stamp of the last op, and mended', async () => {
    await withCluster(3, TRIANGLE, { seed: 30 }, {}, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer, SimPeer];
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'one' }));
      await c.net.resolve(b.nodes.create({ type: 'Project', name: 'of b' }));
      await c.net.settle();
      const backup = backupOf(a, [a.id, b.id]);
      // One more write reaches the mesh; the copy numbers two of its own from there.
      const point = await c.net.resolve(
        a.nodes.create({ type: 'DataPoint', name: 'two', meta: { kind: 'number' } }),
      );
      await c.net.resolve(a.nodes.setValue(point.id, 1));
      await c.net.settle();
      restartOn(c, backup);
      for (const name of ['four', 'five']) await c.net.resolve(a.nodes.create({ type: 'Project', name }));
      assert.ok(
        a.store.ownerState(a.id).applied >= b.replicator.versionVector()[a.id]!,
        'b holds no op of a past what a numbered',
      );

      c.healAll();
      await c.net.settle();
      for (const p of c.peers) assert.deepEqual(names(p), ['five', 'four', 'of b', 'one'], p.name);
      for (const p of c.peers) {
        assert.equal(p.store.node(point.id)?.value, 1, `${p.name} has the other copy's data point`);
      }
      assertConverged(c.peers);
    });
  });

  test("a replica that got the copy's ops first ends equal to one that had the others", async () => {
    await withCluster(3, TRIANGLE, { seed: 32 }, {}, async (c) => {
      const [a, b, cc] = c.peers as [SimPeer, SimPeer, SimPeer];
      const { backup } = await copyThenMore(c, true);
      // Back on its copy next to c, as far behind: c gets a's new ops under b's numbers.
      restartOn(c, backup);
      c.net.connect(a.id, cc.id);
      await c.net.runFor(20);
      await c.net.resolve(a.nodes.create({ type: 'Project', name: 'four' }));
      await c.net.settle();
      assert.deepEqual(names(cc), ['four', 'of b', 'one']);

      c.net.connect(a.id, b.id);
      await c.net.settle();
      c.healAll();
      await c.net.settle();
      everyoneHas(c, ['four', 'of b', 'one', 'three', 'two']);
    });
  });
});

describe('a retired owner', () => {
  test('its ops, vectors and snapshots, still sent by peers not told yet, change nothing here', async () => {
    await withCluster(3, TRIANGLE, { seed: 31 }, {}, async (c) => {
      const [a, b, gone] = c.peers as [SimPeer, SimPeer, SimPeer];
      const first = await c.net.resolve(gone.nodes.create({ type: 'Project', name: 'shed' }));
      await c.net.settle();
      assert.ok(a.store.node(first.id));
      // a hears of the retirement first (as Retirements does it); b and the owner itself do not.
      a.retired.add(gone.id);
      a.store.transaction('FULL', () =>
        a.store.retireServer({ id: gone.id, name: 'p2', by: a.id, at: new Date(0).toISOString() }),
      );
      a.replicator.forgetOwner(gone.id);
      const second = await c.net.resolve(gone.nodes.create({ type: 'Project', name: 'shed 2' }));
      await c.net.settle();
      assert.ok(b.store.node(second.id), 'b, not told, has it');
      a.replicator.message(b.id, { t: 'vv', vv: b.replicator.versionVector() });
      a.replicator.message(b.id, {
        t: 'snap',
        owner: gone.id,
        seq: 99,
        nodes: [{ ...toApi(b.store.node(second.id)!), hlc: b.store.node(second.id)!.hlc }],
        last: true,
      } as LinkMessage);
      await c.net.settle();
      assert.deepEqual(a.store.nodes({ owner: gone.id }), []);
      assert.deepEqual(a.store.opsAfter(gone.id, 0, 100), []);
      assert.equal(a.replicator.versionVector()[gone.id], undefined);
      assert.equal(a.store.versionVector()[gone.id], undefined);
    });
  });
});

describe('receiving ops', () => {
  test('ops held past a gap are counted out again when a snapshot replaces them', async () => {
    // maxPendingOps 1: the one slot must come free again after the snapshot.
    await withCluster(2, [[0, 1]], { seed: 4 }, { maxPendingOps: 1 }, async (c) => {
      const [sender, receiver] = c.peers as [SimPeer, SimPeer];
      c.net.disconnect(sender.id, receiver.id);
      const owner = serverId(7); // An owner that is not in this cluster.
      const id = c.newId();
      const op = (seq: number): Op => ({
        owner,
        seq,
        hlc: encodeHlc(c.net.time.now(), seq),
        kind: seq === 1 ? 'create' : 'update',
        node: { id, type: 'Project', parent: null, name: `v${seq}`, meta: {} },
      });
      const ops = (...seqs: number[]): LinkMessage => ({ t: 'ops', ops: seqs.map(op) });
      c.net.inject(sender.id, receiver.id, ops(1));
      c.net.inject(sender.id, receiver.id, ops(3)); // Held: 2 is missing.
      const { node: state, hlc } = op(4);
      c.net.inject(sender.id, receiver.id, {
        t: 'snap',
        owner,
        seq: 4,
        nodes: [{ ...state, hlc, version: 4 }],
        last: true,
      });
      assert.equal(receiver.replicator.versionVector()[owner], 4);
      c.net.inject(sender.id, receiver.id, ops(6)); // Held: 5 is missing.
      c.net.inject(sender.id, receiver.id, ops(5));
      assert.equal(receiver.replicator.versionVector()[owner], 6, 'op 6 was held and applied after 5');
      assert.equal(receiver.store.node(id)?.name, 'v6');
      await c.net.settle();
    });
  });
});

/**
 * Hands `to` an op of an owner outside the cluster stamped 900 ms ahead of virtual time (within
 * the drift allowed): `to`'s clock then stays there, and its own ops are stamped past its wall
 * time, all in that one millisecond, as on a Pi whose clock is behind.
 */
function stampFromAhead(c: Cluster, from: SimPeer, to: SimPeer): Op {
  const op: Op = {
    owner: serverId(7),
    seq: 1,
    hlc: encodeHlc(c.net.time.now() + 900, 0),
    kind: 'create',
    node: { id: c.newId(), type: 'Project', parent: null, name: 'ahead', meta: {} },
  };
  c.net.inject(from.id, to.id, { t: 'ops', ops: [op] });
  return op;
}

/** A DataPoint of kind json owned by `peer`, made through it. */
function jsonPoint(c: Cluster, peer: SimPeer, name: string): Promise<ShoalNode> {
  return c.net.resolve(peer.nodes.create({ type: 'DataPoint', name, meta: { kind: 'json' } }));
}

/** A chain a-b-end. */
const CHAIN: [number, number][] = [
  [0, 1],
  [1, 2],
];

/**
 * On a CHAIN cluster: a's data point gets 60 readings of about 100 bytes while a is cut from b,
 * and a's log is compacted: b, and end behind it, will need a snapshot and a backfill.
 */
async function missedOnAChain(c: Cluster): Promise<{ a: SimPeer; b: SimPeer; end: SimPeer; point: string }> {
  const [a, b, end] = c.peers as [SimPeer, SimPeer, SimPeer];
  const point = await jsonPoint(c, a, 'far');
  await c.net.settle();
  c.net.disconnect(a.id, b.id);
  for (let i = 0; i < 60; i++) await c.net.resolve(a.nodes.setValue(point.id, `${'z'.repeat(100)}${i}`));
  await c.net.settle();
  a.store.compactLog(0);
  return { a, b, end, point: point.id };
}

describe('stamps across a restart', () => {
  test("an owner's stamps never go back across a restart, though the wall clock is behind its last one", async () => {
    await withCluster(2, [[0, 1]], { seed: 18 }, {}, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      const point = await jsonPoint(c, a, 'p');
      await c.net.settle();
      // a's last op is stamped past its wall time.
      const ahead = stampFromAhead(c, b, a);
      await c.net.resolve(a.nodes.setValue(point.id, 1));
      await c.net.settle();
      c.restart(0);
      await c.net.settle();
      await c.net.resolve(a.nodes.setValue(point.id, 2));
      await c.net.settle();
      const stamps = a.store.opsAfter(a.id, 0, 100).map((op) => op.hlc);
      assert.deepEqual([...stamps].sort(), stamps, 'in the order of their numbers');
      assert.ok(stamps.at(-1)! > ahead.hlc, 'the last one past the stamp that came from ahead');
    });
  });
});

describe('readings past a compacted log', () => {
  test('come after the snapshot in pages, each once, those of one millisecond split across pages; a backfill cut short goes on with another neighbour', async () => {
    await withCluster(3, TRIANGLE, { seed: 12 }, { batchBytes: 4096 }, async (c) => {
      const [a, b, lagging] = c.peers as [SimPeer, SimPeer, SimPeer];
      const point = await jsonPoint(c, a, 'sensor');
      await c.net.resolve(a.nodes.setValue(point.id, 'before'));
      // A point that does not change while lagging is away: nothing of it is asked for.
      const still = await jsonPoint(c, a, 'still');
      await c.net.resolve(a.nodes.setValue(still.id, 'unchanged'));
      const asked: string[] = [];
      await c.net.settle();
      for (const other of [a, b]) c.net.disconnect(lagging.id, other.id);
      // 120 readings of about 100 bytes, written at once (in one millisecond), and pages of
      // batchBytes (4096): several pages, each stopping inside that millisecond.
      const values = Array.from({ length: 120 }, (_, i) => `${'x'.repeat(100)}${i}`);
      await c.net.resolve(Promise.all(values.map((v) => a.nodes.setValue(point.id, v))));
      await c.net.settle();
      for (const p of [a, b]) p.store.compactLog(0);
      let fromB = 0;
      c.net.beforeDeliver = (from, _to, message) => {
        if (from === b.id && message.t === 'rd') fromB++;
        if (message.t === 'rdq') asked.push(message.node);
      };
      c.net.connect(lagging.id, a.id);
      await c.net.runUntil(() => (c.net.stats.delivered.rd ?? 0) >= 1);
      // Cut from a (the owner) after its first page: the rest comes from b.
      c.net.disconnect(lagging.id, a.id);
      c.net.connect(lagging.id, b.id);
      await c.net.settle();
      assert.ok(fromB >= 2, 'pages from b');
      assert.ok(asked.length > 0 && asked.every((id) => id === point.id), 'only the point that changed');
      const series = lagging.store.series(point.id, 0, Number.MAX_SAFE_INTEGER, 1000);
      assert.deepEqual(
        series.map((r) => r.value),
        ['before', ...values],
      );
      assert.ok(
        series.filter((r) => r.t === series[1]!.t).length > 30,
        'the readings share a millisecond across pages',
      );
      assert.ok((c.net.stats.delivered.rd ?? 0) >= 4, `${c.net.stats.delivered.rd} pages`);
      assert.ok((c.net.stats.largest.rd ?? 0) <= 4096, 'a page holds batchBytes at most');
      const backfilled = await lagging.metrics.readingsBackfilled.get();
      assert.equal(backfilled.values[0]?.value, 120, 'each reading added once');
      c.healAll();
      await c.net.settle();
      assertConverged(c.peers);
      assertSeriesConverged(c.peers);
    });
  });

  test('a restart in the middle of a backfill goes on with it: what is still to fetch is stored', async () => {
    for (const crash of [false, true]) {
      await withCluster(2, [[0, 1]], { seed: 16 }, { batchBytes: 4096 }, async (c) => {
        const [a, lagging] = c.peers as [SimPeer, SimPeer];
        const point = await jsonPoint(c, a, 'sensor');
        await c.net.settle();
        c.net.disconnect(a.id, lagging.id);
        const values = Array.from({ length: 90 }, (_, i) => `${'w'.repeat(100)}${i}`);
        for (const v of values) await c.net.resolve(a.nodes.setValue(point.id, v));
        await c.net.settle();
        a.store.compactLog(0);
        c.net.connect(a.id, lagging.id);
        await c.net.runUntil(() => (c.net.stats.delivered.rd ?? 0) >= 1);
        assert.ok(lagging.store.backfill().length > 0, 'kept while it runs');
        c.restart(1, crash);
        await c.net.settle();
        assertSeriesConverged(c.peers, crash ? 'after a crash' : 'after a stop');
        assert.deepEqual(
          lagging.store.series(point.id, 0, Number.MAX_SAFE_INTEGER, 1000).map((r) => r.value),
          values,
        );
        assert.deepEqual(lagging.store.backfill(), [], 'forgotten when done');
      });
    }
  });

  test('repeated readings are all kept: one value twice in a millisecond, where the backfill begins and ends, and ops that come meanwhile', async () => {
    await withCluster(2, [[0, 1]], { seed: 14 }, {}, async (c) => {
      const [a, lagging] = c.peers as [SimPeer, SimPeer];
      const point = await jsonPoint(c, a, 'switch');
      await c.net.settle();
      // Every op of a below is stamped in one millisecond.
      stampFromAhead(c, lagging, a);
      await c.net.resolve(a.nodes.setValue(point.id, 1));
      await c.net.settle();
      c.net.disconnect(a.id, lagging.id);
      await c.net.resolve(a.nodes.setValue(point.id, 1));
      await c.net.resolve(Promise.all([a.nodes.setValue(point.id, 0), a.nodes.setValue(point.id, 0)]));
      await c.net.settle();
      a.store.compactLog(0);
      c.net.connect(a.id, lagging.id);
      // Ops of the owner while the backfill runs, in the same millisecond again.
      await c.net.runUntil(() => (c.net.stats.delivered.snap ?? 0) >= 1);
      await c.net.resolve(Promise.all([a.nodes.setValue(point.id, 0), a.nodes.setValue(point.id, 1)]));
      await c.net.settle();
      assertSeriesConverged(c.peers);
      const series = lagging.store.series(point.id, 0, Number.MAX_SAFE_INTEGER, 100);
      assert.deepEqual(series.map((r) => r.value).sort(), [0, 0, 0, 1, 1, 1]);
      assert.ok(
        series.every((r) => r.t === series[0]!.t),
        'all in one millisecond',
      );
      assert.ok((c.net.stats.delivered.rd ?? 0) >= 1, 'a backfill');
    });
  });

  test('a relay still fetching the readings itself answers "later", and its neighbour gets them all after it', async () => {
    await withCluster(3, CHAIN, { seed: 15 }, { batchBytes: 4096 }, async (c) => {
      const { a, b, end, point } = await missedOnAChain(c);
      let later = 0;
      c.net.beforeDeliver = (_from, to, message) => {
        if (to === end.id && message.t === 'rd' && message.later) later++;
      };
      c.net.connect(a.id, b.id);
      await c.net.settle();
      assert.ok(later > 0, 'the end of the chain was told "later"');
      assertConverged(c.peers);
      assertSeriesConverged(c.peers);
      assert.equal(end.store.series(point, 0, Number.MAX_SAFE_INTEGER, 100).length, 60);
    });
  });

  test('two servers fetching the same readings from each other do not wait for ever: the one with the lower id answers', async () => {
    await withCluster(3, CHAIN, { seed: 17 }, { batchBytes: 4096 }, async (c) => {
      const { a, b, end, point } = await missedOnAChain(c);
      c.net.connect(a.id, b.id);
      // b has its snapshot and a first page; end has its snapshot from b; then a goes.
      await c.net.runUntil(() => (c.net.stats.delivered.rd ?? 0) >= 1 && end.store.backfill().length > 0);
      c.net.disconnect(a.id, b.id);
      await c.net.settle();
      assert.deepEqual(b.store.backfill(), [], "b's backfill ended");
      assert.deepEqual(end.store.backfill(), [], "end's backfill ended");
      // Both hold the same readings: what b had fetched from a before it went.
      const readings = (p: SimPeer): unknown[] =>
        p.store.series(point, 0, Number.MAX_SAFE_INTEGER, 100).map((r) => r.value);
      assert.ok(readings(b).length > 0);
      assert.deepEqual(readings(end), readings(b));
    });
  });

  test("pages hold only the asked owner's data point readings, in the range, up to the snapshot's seq at its end, and no more than batchBytes", async () => {
    await withCluster(2, [[0, 1]], { seed: 13 }, { batchBytes: 2048 }, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      const project = await c.net.resolve(a.nodes.create({ type: 'Project', name: 'p' }));
      const point = await jsonPoint(c, a, 'd');
      const set = (i: number): Promise<unknown> => a.nodes.setValue(point.id, { i, pad: 'x'.repeat(80) });
      for (let i = 0; i < 40; i++) {
        // A millisecond each, but 29 and 30 are written together, in one.
        await c.net.resolve(i === 29 ? Promise.all([set(29), set(30)]) : set(i));
        if (i === 29) i++;
        await c.net.runFor(1);
      }
      await c.net.settle();
      const pages: Extract<LinkMessage, { t: 'rd' }>[] = [];
      c.net.beforeDeliver = (_from, to, message) => {
        if (to === b.id && message.t === 'rd') pages.push(message);
      };
      const held = a.store.series(point.id, 0, Number.MAX_SAFE_INTEGER, 100);
      assert.equal(held[29]!.t, held[30]!.t, '29 and 30 share a millisecond');
      const seqOf = (i: number): number =>
        a.store.opsAfter(a.id, 0, 1000).find((op) => (op.node.value as { i?: number } | undefined)?.i === i)!
          .seq;
      const ask = {
        t: 'rdq' as const,
        ref: 1,
        owner: a.id,
        node: point.id,
        from: held[5]!.t,
        skip: 1,
        to: held[29]!.t,
        seq: seqOf(29), // Not 30, of the same millisecond.
      };
      c.net.inject(b.id, a.id, { ...ask, ref: 1, node: project.id });
      c.net.inject(b.id, a.id, { ...ask, ref: 2, owner: b.id });
      c.net.inject(b.id, a.id, { ...ask, ref: 3 });
      await c.net.runUntil(() => pages.length === 3);
      assert.deepEqual(
        pages.slice(0, 2).map((p) => [p.ref, p.points, p.more]),
        [
          [1, [], false],
          [2, [], false],
        ],
        'not a data point; not of that owner',
      );
      let page = pages[2]!;
      const got = [...page.points];
      assert.ok(page.more, 'more than a page');
      assert.ok(Buffer.byteLength(JSON.stringify(page)) <= 2048, 'a page holds batchBytes at most');
      while (page.more) {
        const last = page.points[page.points.length - 1]!;
        const atLast = page.points.filter(([t]) => t === last[0]).length;
        const skip = last[0] === page.points[0]![0] && last[0] === ask.from ? ask.skip + atLast : atLast;
        const asked = pages.length;
        c.net.inject(b.id, a.id, { ...ask, ref: asked + 1, from: last[0], skip });
        await c.net.runUntil(() => pages.length === asked + 1);
        page = pages[asked]!;
        got.push(...page.points);
      }
      // From held[5] less its one reading, to 29: not 30 in the same millisecond (a later op).
      assert.deepEqual(
        got.map(([, , value]) => (value as { i: number }).i),
        Array.from({ length: 24 }, (_, i) => i + 6),
      );
    });
  });
});

describe('bad input at the owner and on the links', () => {
  /** A value nested `depth` arrays deep. */
  const nested = (depth: number): unknown => {
    let value: unknown = 1;
    for (let i = 0; i < depth; i++) value = [value];
    return value;
  };

  test('a value or meta nested deeper than maxJsonDepth, or a node over maxNodeBytes, is refused at its owner', async () => {
    await withCluster(2, [[0, 1]], { seed: 40 }, { maxJsonDepth: 8, maxNodeBytes: 4096 }, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      const point = await c.net.resolve(
        a.nodes.create({ type: 'DataPoint', name: 'j', meta: { kind: 'json' } }),
      );
      await c.net.settle();
      const refused = async (write: Promise<unknown>, code: string, pattern: RegExp): Promise<void> => {
        await assert.rejects(c.net.resolve(write), (err: ShoalError) => {
          assert.equal(err.code, code);
          assert.match(err.message, pattern);
          return true;
        });
      };
      // Through a peer too: the owner checks, whoever asks.
      for (const via of [a, b]) {
        await refused(
          via.nodes.setValue(point.id, nested(9)),
          'SHOAL_BAD_REQUEST',
          /value: nested deeper than 8/,
        );
        await refused(
          via.nodes.update(point.id, { meta: { kind: 'json', x: nested(9) } }),
          'SHOAL_BAD_REQUEST',
          /meta: nested deeper/,
        );
        await refused(
          via.nodes.setValue(point.id, { blob: 'x'.repeat(5000) }),
          'SHOAL_TOO_LARGE',
          /maxNodeBytes/,
        );
      }
      await c.net.resolve(b.nodes.setValue(point.id, nested(8)));
      await c.net.settle();
      assert.deepEqual(b.store.node(point.id)?.value, nested(8), 'as deep as allowed is fine');
    });
  });

  test('ops nested deeper than a link message may be are dropped and counted; a replica that cannot apply ops stays up', async () => {
    await withCluster(2, [[0, 1]], { seed: 41 }, {}, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      const point = await c.net.resolve(
        a.nodes.create({ type: 'DataPoint', name: 'j', meta: { kind: 'json' } }),
      );
      await c.net.settle();
      const [first] = b.store.opsAfter(a.id, 0, 1);
      // Written as text: JSON.stringify itself cannot go 5000 levels deep.
      const deep = { ...first!, seq: first!.seq + 1, kind: 'value', node: { ...first!.node, value: '@' } };
      const text = JSON.stringify({ t: 'ops', ops: [deep] });
      const frame = Buffer.from(text.replace('"@"', `${'['.repeat(5000)}1${']'.repeat(5000)}`));
      assert.deepEqual(parseMessage(frame), { ok: false, reason: 'invalid' });

      // An op the store cannot take (here: the store throws) is not applied, and nothing else is.
      const apply = b.store.applyOp.bind(b.store);
      b.store.applyOp = (op) => {
        if (op.node.value === 'poison') throw new Error('cannot store this');
        return apply(op);
      };
      const before = b.replicator.versionVector()[a.id];
      await c.net.resolve(a.nodes.setValue(point.id, 'poison'));
      await c.net.settle();
      assert.equal(b.replicator.versionVector()[a.id], before, 'b did not count the op it could not store');
      assert.match(b.errors.join('\n'), /could not be applied/);
      // Once it can, it gets it at the next swap of vectors.
      b.store.applyOp = apply;
      await c.net.resolve(a.nodes.setValue(point.id, 'fine'));
      await c.net.runFor(DEFAULT_OPTIONS.antiEntropyIntervalMs);
      await c.net.settle();
      assert.equal(b.store.node(point.id)?.value, 'fine');
      assertConverged(c.peers);
    });
  });

  test('ops and snapshot messages are held to batchBytes, however large the nodes, and still converge', async () => {
    const batchBytes = 20_000;
    // A small op cache too: what it no longer holds is read from the log.
    const options = { batchBytes, batchOps: 1000, opCacheBytes: 65_536 };
    await withCluster(2, [[0, 1]], { seed: 43 }, options, async (c) => {
      const [a, b] = c.peers as [SimPeer, SimPeer];
      c.net.disconnect(a.id, b.id);
      for (let i = 0; i < 12; i++) {
        await c.net.resolve(
          a.nodes.create({ type: 'Project', name: `big ${i}`, meta: { note: 'x'.repeat(6000) } }),
        );
      }
      c.healAll();
      await c.net.settle();
      assertConverged(c.peers);
      assert.ok(c.net.stats.largest.ops! <= batchBytes, `ops message of ${c.net.stats.largest.ops} bytes`);
      // And as a snapshot, once the ops are compacted away.
      c.net.disconnect(a.id, b.id);
      for (let i = 0; i < 12; i++) {
        await c.net.resolve(
          a.nodes.create({ type: 'Project', name: `bigger ${i}`, meta: { note: 'y'.repeat(6000) } }),
        );
      }
      a.store.compactLog(0);
      c.healAll();
      await c.net.settle();
      assertConverged(c.peers);
      assert.ok((c.net.stats.sent.snap ?? 0) > 1, 'the snapshot came in several messages');
      assert.ok(c.net.stats.largest.snap! <= batchBytes, `snap message of ${c.net.stats.largest.snap} bytes`);
    });
  });

  test('writes holding more than maxPendingWriteBytes at once are refused with 503, one at least taken', async () => {
    await withCluster(2, [[0, 1]], { seed: 44 }, { maxPendingWriteBytes: 65_536 }, async (c) => {
      const [a] = c.peers as [SimPeer, SimPeer];
      const point = await c.net.resolve(
        a.nodes.create({ type: 'DataPoint', name: 's', meta: { kind: 'string' } }),
      );
      const big = (i: number) => `${i}`.padEnd(30_000, 'x');
      const results = await c.net.resolve(
        Promise.allSettled([0, 1, 2, 3].map((i) => a.nodes.setValue(point.id, big(i)))),
      );
      assert.deepEqual(
        results.map((r) => r.status),
        ['fulfilled', 'fulfilled', 'rejected', 'rejected'],
      );
      assert.match(
        ((results[2] as PromiseRejectedResult).reason as ShoalError).message,
        /maxPendingWriteBytes/,
      );
      // Once those are answered, there is room again.
      await c.net.resolve(a.nodes.setValue(point.id, big(9)));
      await c.net.settle();
      assertConverged(c.peers);
    });
  });

  test("a write that breaks its group's transaction fails alone; the others of the group are written", async () => {
    await withCluster(2, [[0, 1]], { seed: 42 }, {}, async (c) => {
      const [a] = c.peers as [SimPeer, SimPeer];
      const apply = a.store.applyOp.bind(a.store);
      a.store.applyOp = (op) => {
        if (op.node.name === 'bad') throw new Error('cannot store this');
        return apply(op);
      };
      // Asked in the same tick: one group, one transaction.
      const writes = ['one', 'bad', 'two'].map((name) => a.nodes.create({ type: 'Project', name }));
      const results = await c.net.resolve(Promise.allSettled(writes));
      assert.deepEqual(
        results.map((r) => r.status),
        ['fulfilled', 'rejected', 'fulfilled'],
      );
      assert.equal(((results[1] as PromiseRejectedResult).reason as ShoalError).code, 'SHOAL_INTERNAL');
      await c.net.settle();
      assertConverged(c.peers);
    });
  });
});

function valueOps(owner: SimPeer, id: string, value: unknown): number {
  return owner.store
    .opsAfter(owner.id, 0, 1_000_000)
    .filter((o) => o.kind === 'value' && o.node.id === id && o.node.value === value).length;
}
