/**
 * The automation engine of one server (src/automation/engine.ts) on a real in-memory Store, an
 * EventBus and a fake clock, with stub dependencies: `setValue` writes the value into the store
 * and publishes it on the bus as the replicator would, `membership` is set by the test, and
 * `flood` records what would go to the mesh. Triggers, executors, placement moves, fire messages
 * from other servers (deduplicated), and the run state a job reports.
 *
 * The engine runs executors from setImmediate and its state timer on a real (short) timeout, so
 * tests wait for outcomes by yielding to the event loop, never by sleeping a fixed time.
 */

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import pino from 'pino';
import { AutomationEngine, type EngineOptions, type RunState } from '../../src/automation/engine.ts';
import { rendezvousWinner } from '../../src/automation/placement.ts';
import { encodeHlc } from '../../src/clock.ts';
import { EventBus } from '../../src/events.ts';
import type { AutoMessage } from '../../src/link/messages.ts';
import type { PeerView } from '../../src/mesh/peer-table.ts';
import { Metrics } from '../../src/metrics.ts';
import type { NodeType } from '../../src/store/node-types.ts';
import {
  apiNodeOf,
  type NodeState,
  type Op,
  type OpKind,
  type ShoalNode,
  Store,
} from '../../src/store/store.ts';
import { FakeClock } from '../support/fake-clock.ts';

const SELF = 'aaaaaaaa-0000-4000-8000-000000000001';
const OTHER = 'bbbbbbbb-0000-4000-8000-000000000002';
const PROJECT = 'cccccccc-0000-4000-8000-000000000003';

/** A UUID-shaped node id from a small number, so failures read well. */
function nid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

const OPTIONS: EngineOptions = {
  settleMs: 1000,
  startupMs: 0,
  stateIntervalMs: 5,
  maxEventAgeMs: 60_000,
  webhookBackoffMs: 1,
};

/** Yields to the event loop until `cond` holds (at most ~2 s), or fails naming `what`. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 2000;
  for (let n = 0; !cond(); n++) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => (n < 200 ? setImmediate(resolve) : setTimeout(resolve, 1)));
  }
}

/** Lets queued runs finish: enough event loop turns for setImmediate chains and async writes. */
async function drain(): Promise<void> {
  for (let n = 0; n < 30; n++) await new Promise((resolve) => setImmediate(resolve));
}

/** The store, the bus and the time shared by the engines of one test (one or two "servers"). */
class World {
  readonly clock = new FakeClock();
  readonly store = new Store(':memory:');
  readonly events = new EventBus();
  live: string[] = [SELF];
  known = 1;
  #logical = 0;
  readonly engines: AutomationEngine[] = [];

  constructor() {
    this.#apply(SELF, 'create', { id: SELF, type: 'Server', parent: null, name: 'self', meta: {} });
    this.#apply(OTHER, 'create', { id: OTHER, type: 'Server', parent: null, name: 'other', meta: {} });
    this.#apply(SELF, 'create', { id: PROJECT, type: 'Project', parent: SELF, name: 'house', meta: {} });
  }

  /** Applies an op of `owner` (its next seq, stamped now) and publishes it like the replicator. */
  #apply(owner: string, kind: OpKind, node: NodeState, wall = this.clock.now()): ShoalNode {
    const op: Op = {
      owner,
      seq: this.store.ownerState(owner).applied + 1,
      hlc: encodeHlc(wall, this.#logical++),
      kind,
      node,
    };
    assert.equal(
      this.store.transaction('FULL', () => this.store.applyOp(op)),
      'applied',
    );
    const shown = apiNodeOf(op);
    this.events.publish({ type: 'node', op: kind, node: shown });
    return shown;
  }

  create(
    id: string,
    type: NodeType,
    parent: string,
    meta: Record<string, unknown> = {},
    extra: { value?: unknown; owner?: string; name?: string } = {},
  ): string {
    const state: NodeState = { id, type, parent, name: extra.name ?? `${type} ${id.slice(-3)}`, meta };
    if ('value' in extra) state.value = extra.value;
    this.#apply(extra.owner ?? SELF, 'create', state);
    return id;
  }

  dataPoint(id: string, value: unknown, name?: string): string {
    return this.create(id, 'DataPoint', PROJECT, {}, { value, ...(name ? { name } : {}) });
  }

  /** A new value of a data point, written by its owner; `ageMs` back-dates it. */
  setValue(id: string, value: unknown, ageMs = 0): void {
    const node = this.store.node(id);
    assert.ok(node, `no node ${id}`);
    const { type, parent, name, meta } = node;
    this.#apply(node.owner, 'value', { id, type, parent, name, meta, value }, this.clock.now() - ageMs);
  }

  /** New meta for a node, written by its owner. */
  update(id: string, meta: Record<string, unknown>): void {
    const node = this.store.node(id)!;
    const { type, parent, name } = node;
    this.#apply(node.owner, 'update', { id, type, parent, name, meta });
  }

  remove(id: string): void {
    const node = this.store.node(id)!;
    const { type, parent, name, meta } = node;
    this.#apply(node.owner, 'delete', { id, type, parent, name, meta });
  }

  valueOf(id: string): unknown {
    return this.store.node(id)?.value;
  }

  /** An engine for server `selfId`, with its own record of writes and floods. */
  engine(selfId = SELF, options: Partial<EngineOptions> = {}): Server {
    const server = new Server(this, selfId, options);
    this.engines.push(server.engine);
    return server;
  }

  /** Tells every engine that peers came or went. */
  peersChanged(live: string[], known: number): void {
    this.live = live;
    this.known = known;
    this.events.publish({ type: 'peer', peer: { id: OTHER } as PeerView });
  }

  close(): void {
    for (const engine of this.engines) engine.stop();
    this.store.close();
  }
}

class Server {
  readonly writes: { id: string; value: unknown }[] = [];
  readonly floods: { message: AutoMessage; from: string | undefined }[] = [];
  /** Targets whose writes fail, with the error. */
  readonly failing = new Map<string, string>();
  /** While set, writes wait for it. */
  gate: Promise<void> | undefined;
  readonly engine: AutomationEngine;

  constructor(world: World, selfId: string, options: Partial<EngineOptions>) {
    this.engine = new AutomationEngine(
      {
        selfId,
        store: world.store,
        setValue: async (id, value) => {
          this.writes.push({ id, value });
          await this.gate;
          const error = this.failing.get(id);
          if (error) throw new Error(error);
          world.setValue(id, value);
          return value;
        },
        events: world.events,
        clock: world.clock,
        log: pino({ level: 'silent' }),
        metrics: new Metrics({ processMetrics: false }),
        membership: () => ({ live: world.live, known: world.known }),
        flood: (message, from) => this.floods.push({ message, from }),
      },
      { ...OPTIONS, ...options },
    );
  }

  fires(id: string): AutoMessage[] {
    return this.floods.filter((f) => f.message.fire && f.message.id === id).map((f) => f.message);
  }

  state(id: string): RunState | undefined {
    return this.engine.stateOf(id);
  }
}

let world: World;
afterEach(() => world?.close());

function setup(): World {
  world = new World();
  return world;
}

const TEMP = nid(0xd01);
const AC = nid(0xd02);
const HOT = nid(0xa01);
const SET = nid(0xe01);

/** Temp with a HighThreshold at 25 (hysteresis 2) and under it a SetValue that turns the AC on. */
function thermostat(w: World, owner = SELF): void {
  w.dataPoint(TEMP, 20, 'Temp');
  w.dataPoint(AC, 'off', 'AC');
  w.create(HOT, 'HighThreshold', TEMP, { threshold: 25, hysteresis: 2 }, { owner, name: 'Too hot' });
  w.create(SET, 'SetValue', HOT, { target: AC, value: 'on' });
}

describe('triggers', () => {
  test('a HighThreshold fires once when the value crosses, and its SetValue sets the target', async () => {
    const w = setup();
    thermostat(w);
    const s = w.engine();
    s.engine.start();
    w.setValue(TEMP, 24);
    await drain();
    assert.equal(s.fires(HOT).length, 0);
    assert.deepEqual(s.writes, []);

    w.setValue(TEMP, 26);
    await until(() => w.valueOf(AC) === 'on', 'the AC to be on');
    assert.deepEqual(s.writes, [{ id: AC, value: 'on' }]);
    const [fire] = s.fires(HOT);
    assert.equal(s.fires(HOT).length, 1);
    assert.equal(fire?.origin, SELF);
    assert.equal(fire?.state.runner, SELF);
    assert.equal(fire?.state.result, 26);
    assert.equal(s.floods.find((f) => f.message.fire)?.from, undefined);
    const hot = s.state(HOT)!;
    assert.equal(hot.runner, SELF);
    assert.equal(hot.runs, 1);
    assert.equal(hot.ok, true);
    assert.equal(hot.result, 26);
    assert.equal(hot.lastRun, new Date(w.clock.now()).toISOString());
    await until(() => s.state(SET)?.runs === 1, 'the SetValue run state');
    assert.equal(s.state(SET)?.ok, true);
    assert.equal(s.state(SET)?.result, 'on');
  });

  test('hysteresis: no chatter around the threshold, one more fire only after falling back', async () => {
    const w = setup();
    thermostat(w);
    const s = w.engine();
    s.engine.start();
    for (const v of [26, 24, 26.5, 25.1, 23.5, 27, 24]) {
      w.setValue(TEMP, v);
      await drain();
    }
    assert.equal(s.fires(HOT).length, 1);
    w.setValue(TEMP, 23);
    await drain();
    w.setValue(TEMP, 26);
    await drain();
    assert.deepEqual(
      s.fires(HOT).map((m) => m.state.result),
      [26, 26],
    );
    assert.equal(s.state(HOT)?.runs, 2);
    // The second run found the AC on already, so wrote nothing.
    await until(() => s.state(SET)?.runs === 2, 'the second SetValue run');
    assert.equal(s.writes.length, 1);
  });

  test('fire messages carry increasing seqs; state updates follow on the state timer', async () => {
    const w = setup();
    thermostat(w);
    const s = w.engine();
    s.engine.start();
    w.setValue(TEMP, 30);
    await drain();
    w.setValue(TEMP, 10);
    w.setValue(TEMP, 30);
    await drain();
    const seqs = s.fires(HOT).map((m) => m.seq);
    assert.equal(seqs.length, 2);
    assert.ok(seqs[1]! > seqs[0]!);
    await until(
      () => s.floods.some((f) => !f.message.fire && f.message.id === SET),
      'a state message of the SetValue',
    );
    const state = s.floods.findLast((f) => f.message.id === SET)!.message;
    assert.equal(state.origin, SELF);
    assert.equal(state.state.runner, SELF);
  });

  test('a value older than maxEventAgeMs when it arrives fires nothing', async () => {
    const w = setup();
    thermostat(w);
    const s = w.engine();
    s.engine.start();
    w.setValue(TEMP, 30, OPTIONS.maxEventAgeMs + 1);
    await drain();
    assert.equal(s.fires(HOT).length, 0);
    assert.equal(w.valueOf(AC), 'off');
  });

  test('a threshold replicated before the data point it hangs under watches it once it arrives', async () => {
    const w = setup();
    const s = w.engine();
    s.engine.start();
    w.dataPoint(AC, 'off', 'AC');
    w.create(HOT, 'HighThreshold', TEMP, { threshold: 25 });
    w.create(SET, 'SetValue', HOT, { target: AC, value: 'on' });
    w.dataPoint(TEMP, 20, 'Temp');
    w.setValue(TEMP, 30);
    await until(() => w.valueOf(AC) === 'on', 'the AC to be on');
    assert.equal(s.fires(HOT).length, 1);
  });

  test('a trigger placed on another server does not fire here', async () => {
    const w = setup();
    thermostat(w, OTHER);
    const s = w.engine();
    s.engine.start();
    assert.equal(s.engine.runnerOf(HOT), OTHER);
    w.setValue(TEMP, 30);
    await drain();
    assert.equal(s.fires(HOT).length, 0);
    assert.deepEqual(s.writes, []);
  });
});

describe('executors', () => {
  const A = nid(0xd11);
  const B = nid(0xd12);
  const C = nid(0xd13);
  const OUT = nid(0xd14);
  const CALC = nid(0xe11);

  test('a Calculation writes its result to its target, and nothing when the result is unchanged', async () => {
    const w = setup();
    w.dataPoint(A, 1);
    w.dataPoint(B, 1);
    w.dataPoint(OUT, 0);
    const s = w.engine();
    s.engine.start();
    // Created after the start: indexed from its event.
    w.create(CALC, 'Calculation', PROJECT, { formula: 'a * 2 + b', inputs: { a: A, b: B }, target: OUT });
    w.setValue(A, 3);
    await until(() => w.valueOf(OUT) === 7, 'the result 7');
    assert.deepEqual(s.writes, [{ id: OUT, value: 7 }]);
    // The same value again: a run, but the result is unchanged, so no write.
    w.setValue(A, 3);
    await until(() => s.state(CALC)?.runs === 2, 'the second run');
    assert.deepEqual(s.writes, [{ id: OUT, value: 7 }]);
    assert.deepEqual(
      { ok: s.state(CALC)?.ok, result: s.state(CALC)?.result, runner: s.state(CALC)?.runner },
      { ok: true, result: 7, runner: SELF },
    );
    w.setValue(B, 4);
    await until(() => w.valueOf(OUT) === 10, 'the result 10');
  });

  test('a Calculation whose input has no value reports the error in its state', async () => {
    const w = setup();
    w.dataPoint(A, 1);
    w.dataPoint(B, 'not a number');
    w.dataPoint(OUT, 0);
    w.create(CALC, 'Calculation', PROJECT, { formula: 'a + b', inputs: { a: A, b: B }, target: OUT });
    const s = w.engine();
    s.engine.start();
    w.setValue(A, 2);
    await until(() => s.state(CALC) !== undefined, 'a run');
    assert.equal(s.state(CALC)?.ok, false);
    assert.equal(s.state(CALC)?.error, 'no input "b"');
    assert.equal(s.state(CALC)?.runs, 1);
    assert.deepEqual(s.writes, []);
  });

  test('a Compute averages its inputs', async () => {
    const w = setup();
    w.dataPoint(A, 10);
    w.dataPoint(B, 20);
    w.dataPoint(C, 'off');
    w.dataPoint(OUT, 0);
    w.create(nid(0xe12), 'Compute', PROJECT, { op: 'average', inputs: [A, B, C], target: OUT });
    const s = w.engine();
    s.engine.start();
    w.setValue(C, 30);
    await until(() => w.valueOf(OUT) === 20, 'the average of 10, 20, 30');
    w.setValue(A, 40);
    await until(() => w.valueOf(OUT) === 30, 'the average of 40, 20, 30');
    // Values that are not numbers are left out.
    w.setValue(C, 'broken');
    await until(() => w.valueOf(OUT) === 30 && s.state(nid(0xe12))?.runs === 3, 'the average of 40, 20');
  });

  test('a Compute over a time window reads the series of its one input', async () => {
    const w = setup();
    w.dataPoint(A, 0);
    w.dataPoint(OUT, 0);
    const s = w.engine();
    s.engine.start();
    w.create(nid(0xe13), 'Compute', PROJECT, { op: 'max', inputs: [A], windowMs: 10_000, target: OUT });
    w.setValue(A, 50);
    await until(() => w.valueOf(OUT) === 50, 'max 50');
    w.clock.advance(5000);
    w.setValue(A, 20);
    await drain();
    assert.equal(w.valueOf(OUT), 50, '50 is still in the window');
    w.clock.advance(6000);
    w.setValue(A, 30);
    await until(() => w.valueOf(OUT) === 30, 'max 30 once 50 left the window');
  });

  test('a LogicGate writes its truth value', async () => {
    const w = setup();
    const GATE = nid(0xe14);
    w.dataPoint(A, false);
    w.dataPoint(B, 'on');
    w.dataPoint(OUT, null);
    w.create(GATE, 'LogicGate', PROJECT, { gate: 'AND', inputs: [A, B], target: OUT });
    const s = w.engine();
    s.engine.start();
    w.setValue(A, true);
    await until(() => w.valueOf(OUT) === true, 'true AND "on"');
    w.setValue(B, 0);
    await until(() => w.valueOf(OUT) === false, 'true AND 0');
    assert.deepEqual(s.writes, [
      { id: OUT, value: true },
      { id: OUT, value: false },
    ]);
  });

  test('an executor under a data point runs on its changes', async () => {
    const w = setup();
    w.dataPoint(A, 0);
    w.dataPoint(OUT, 'idle');
    w.create(nid(0xe15), 'SetValue', A, { target: OUT, value: 'touched' });
    const s = w.engine();
    s.engine.start();
    w.setValue(A, 1);
    await until(() => w.valueOf(OUT) === 'touched', 'the write');
  });

  test('a burst of changes costs a run or two, runs never overlap, and the last value gets its run', async () => {
    const w = setup();
    w.dataPoint(A, 0);
    w.dataPoint(OUT, 0);
    w.create(CALC, 'Calculation', PROJECT, { formula: 'a', inputs: { a: A }, target: OUT });
    const s = w.engine();
    s.engine.start();
    let release = (): void => {};
    s.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    w.setValue(A, 1);
    await until(() => s.writes.length === 1, 'the first write to start');
    for (let v = 2; v <= 6; v++) w.setValue(A, v);
    await drain();
    assert.equal(s.writes.length, 1, 'no second run while the first is writing');
    s.gate = undefined;
    release();
    await until(() => w.valueOf(OUT) === 6, 'the last value');
    await drain();
    assert.deepEqual(
      s.writes.map((x) => x.value),
      [1, 6],
    );
    assert.equal(s.state(CALC)?.runs, 2);
  });

  test('a failing write shows ok: false with the error; a missing target too', async () => {
    const w = setup();
    w.dataPoint(A, 0);
    w.dataPoint(OUT, 0);
    const GONE = nid(0xdff);
    const BROKEN = nid(0xe16);
    w.create(CALC, 'Calculation', PROJECT, { formula: 'a + 1', inputs: { a: A }, target: OUT });
    w.create(BROKEN, 'Calculation', PROJECT, { formula: 'a + 2', inputs: { a: A }, target: GONE });
    const s = w.engine();
    s.failing.set(OUT, 'the owner is unreachable');
    s.engine.start();
    w.setValue(A, 5);
    await until(() => s.state(CALC) !== undefined && s.state(BROKEN) !== undefined, 'both runs');
    assert.deepEqual(
      { ok: s.state(CALC)?.ok, error: s.state(CALC)?.error, result: s.state(CALC)?.result },
      { ok: false, error: 'the owner is unreachable', result: 6 },
    );
    assert.deepEqual(
      { ok: s.state(BROKEN)?.ok, error: s.state(BROKEN)?.error },
      { ok: false, error: `target ${GONE} does not exist` },
    );
    assert.equal(w.valueOf(OUT), 0);
    // The next run, once the owner is back, succeeds.
    s.failing.clear();
    w.setValue(A, 6);
    await until(() => w.valueOf(OUT) === 7, 'the write to go through');
    assert.equal(s.state(CALC)?.ok, true);
    assert.equal(s.state(CALC)?.error, undefined);
  });

  test('executors on a wiring loop (two servers each took half of it) do not run, and say why; rewired, they run', async () => {
    const w = setup();
    const E = nid(0xd31);
    const F = nid(0xd32);
    const E2F = nid(0xe31);
    const F2E = nid(0xe32);
    w.dataPoint(E, 0);
    w.dataPoint(F, 0);
    const s = w.engine();
    s.engine.start();
    // Each half passed the loop check of the server that took it; together they loop.
    w.create(E2F, 'Calculation', PROJECT, { formula: 'e + 1', inputs: { e: E }, target: F });
    w.create(F2E, 'Calculation', PROJECT, { formula: 'f + 1', inputs: { f: F }, target: E });
    w.setValue(E, 1);
    await until(() => s.state(E2F)?.error !== undefined, 'the state of the first half');
    await drain();
    assert.deepEqual(s.writes, [], 'nothing written: the loop would never stop');
    for (const id of [E2F, F2E]) w.setValue(id === E2F ? E : F, 2);
    await drain();
    assert.deepEqual(s.writes, []);
    assert.match(String(s.state(E2F)?.error), /^wiring loop/);
    // One half rewired: the other runs again.
    w.dataPoint(A, 0);
    w.update(F2E, { formula: 'f + 1', inputs: { f: F }, target: A });
    w.setValue(E, 5);
    await until(() => w.valueOf(F) === 6, 'the first half to run');
  });

  test('a deleted executor no longer runs', async () => {
    const w = setup();
    w.dataPoint(A, 0);
    w.dataPoint(OUT, 0);
    w.create(CALC, 'Calculation', PROJECT, { formula: 'a', inputs: { a: A }, target: OUT });
    const s = w.engine();
    s.engine.start();
    w.setValue(A, 1);
    await until(() => w.valueOf(OUT) === 1, 'the first write');
    w.remove(CALC);
    assert.equal(s.state(CALC), undefined);
    assert.equal(s.engine.runnerOf(CALC), undefined);
    w.setValue(A, 2);
    await drain();
    assert.equal(w.valueOf(OUT), 1);
  });
});

describe('placement', () => {
  const IN = nid(0xd21);
  const OUT = nid(0xd22);

  /** A node id that `want` wins among `servers` (rendezvous hashing). */
  function idWonBy(want: string, servers: string[], from: number): string {
    for (let n = from; ; n++) if (rendezvousWinner(nid(n), servers) === want) return nid(n);
  }

  function mirror(w: World, id: string, meta: Record<string, unknown> = {}): void {
    w.create(id, 'Calculation', PROJECT, {
      formula: 'x',
      inputs: { x: IN },
      target: OUT,
      placement: 'any',
      ...meta,
    });
  }

  test("'any' moves with membership: it stops at once and starts only after settleMs", async () => {
    const w = setup();
    const JOB = idWonBy(OTHER, [SELF, OTHER], 0xe00);
    w.dataPoint(IN, 0);
    w.dataPoint(OUT, 0);
    mirror(w, JOB);
    w.known = 2;
    const s = w.engine();
    s.engine.start();
    // Alone of two: it wins, but only once the view was stable for settleMs.
    assert.equal(s.engine.runnerOf(JOB), SELF);
    w.setValue(IN, 1);
    await drain();
    assert.deepEqual(s.writes, [], 'not before settleMs');
    w.clock.advance(OPTIONS.settleMs);
    s.engine.reconcile();
    w.setValue(IN, 2);
    await until(() => w.valueOf(OUT) === 2, 'the job to run here');

    // The other server comes: the job is its, at once.
    w.clock.advance(5000);
    w.peersChanged([SELF, OTHER], 2);
    assert.equal(s.engine.runnerOf(JOB), OTHER);
    w.setValue(IN, 3);
    await drain();
    assert.equal(w.valueOf(OUT), 2);

    // It leaves again: back here, after settleMs.
    w.clock.advance(5000);
    w.peersChanged([SELF], 2);
    assert.equal(s.engine.runnerOf(JOB), SELF);
    w.setValue(IN, 4);
    await drain();
    assert.equal(w.valueOf(OUT), 2, 'still settling');
    w.clock.advance(OPTIONS.settleMs);
    s.engine.reconcile();
    w.setValue(IN, 5);
    await until(() => w.valueOf(OUT) === 5, 'the job to run here again');
  });

  test("with two servers on the same data, only the winner runs an 'any' job", async () => {
    const w = setup();
    const MINE = idWonBy(SELF, [SELF, OTHER], 0xe00);
    const THEIRS = idWonBy(OTHER, [SELF, OTHER], 0xe00);
    const OUT2 = nid(0xd23);
    w.dataPoint(IN, 0);
    w.dataPoint(OUT, 0);
    w.dataPoint(OUT2, 0);
    mirror(w, MINE);
    mirror(w, THEIRS, { target: OUT2, formula: 'x * 10' });
    w.live = [SELF, OTHER];
    w.known = 2;
    const self = w.engine(SELF);
    const other = w.engine(OTHER);
    self.engine.start();
    other.engine.start();
    w.clock.advance(OPTIONS.settleMs);
    self.engine.reconcile();
    other.engine.reconcile();
    for (const e of [self, other]) {
      assert.equal(e.engine.runnerOf(MINE), SELF);
      assert.equal(e.engine.runnerOf(THEIRS), OTHER);
    }
    w.setValue(IN, 7);
    await until(() => w.valueOf(OUT) === 7 && w.valueOf(OUT2) === 70, 'both jobs to run');
    await drain();
    assert.deepEqual(self.writes, [{ id: OUT, value: 7 }]);
    assert.deepEqual(other.writes, [{ id: OUT2, value: 70 }]);
    assert.equal(self.state(MINE)?.runner, SELF);
    assert.equal(other.state(THEIRS)?.runner, OTHER);
  });

  test('prefer takes the job to the named server while it is live', async () => {
    const w = setup();
    const JOB = idWonBy(SELF, [SELF, OTHER], 0xe00);
    w.dataPoint(IN, 0);
    w.dataPoint(OUT, 0);
    mirror(w, JOB, { prefer: OTHER });
    w.live = [SELF, OTHER];
    w.known = 2;
    const s = w.engine();
    s.engine.start();
    assert.equal(s.engine.runnerOf(JOB), OTHER);
    w.peersChanged([SELF], 2);
    assert.equal(s.engine.runnerOf(JOB), SELF);
  });
});

describe('fire messages from other servers', () => {
  function fireMessage(seq: number, result: unknown): AutoMessage {
    return {
      t: 'auto',
      origin: OTHER,
      seq,
      id: HOT,
      fire: true,
      state: { runner: OTHER, runs: seq + 1, lastRun: '2023-11-14T22:13:20.000Z', ok: true, result },
    };
  }

  test('a fire runs the executors here that the trigger feeds, once per message', async () => {
    const w = setup();
    thermostat(w, OTHER);
    const s = w.engine();
    s.engine.start();
    const message = fireMessage(0, 31);
    s.engine.receive(OTHER, message);
    await until(() => w.valueOf(AC) === 'on', 'the AC to be on');
    assert.deepEqual(s.writes, [{ id: AC, value: 'on' }]);
    assert.deepEqual(s.state(HOT), message.state, 'the trigger state as its runner reported it');
    // Passed on to the mesh, naming where it came from.
    const about = (id: string) => s.floods.filter((f) => f.message.id === id);
    assert.deepEqual(about(HOT), [{ message, from: OTHER }]);
    await until(() => s.state(SET)?.runs === 1, 'the SetValue run');

    // The same message again (by another path): nothing.
    s.engine.receive(SELF, { ...message, state: { ...message.state } });
    s.engine.receive(OTHER, message);
    await drain();
    assert.equal(s.state(SET)?.runs, 1);
    assert.equal(about(HOT).length, 1);

    // The next fire runs it again.
    s.engine.receive(OTHER, fireMessage(1, 32));
    await until(() => s.state(SET)?.runs === 2, 'the second run');
    assert.equal(s.floods.filter((f) => f.message.fire).length, 2);
  });

  test('an executor replicated before its trigger is woken by it once the trigger arrives', async () => {
    // Ops of different owners arrive in any order: here the SetValue (ours) before the
    // HighThreshold it hangs under (the other server's), and that before the data point it watches.
    const w = setup();
    const s = w.engine();
    s.engine.start();
    w.dataPoint(AC, 'off', 'AC');
    w.create(SET, 'SetValue', HOT, { target: AC, value: 'on' });
    w.create(HOT, 'HighThreshold', TEMP, { threshold: 25 }, { owner: OTHER });
    w.dataPoint(TEMP, 20, 'Temp');
    s.engine.receive(OTHER, fireMessage(0, 31));
    await until(() => w.valueOf(AC) === 'on', 'the AC to be on');
  });

  test('a state message (no fire) only updates the state shown', async () => {
    const w = setup();
    thermostat(w, OTHER);
    const s = w.engine();
    s.engine.start();
    s.engine.receive(OTHER, { ...fireMessage(0, 24), fire: false });
    await drain();
    assert.equal(s.state(HOT)?.result, 24);
    assert.equal(s.state(SET), undefined);
    assert.deepEqual(s.writes, []);
  });

  test('our own message coming back is not run again', async () => {
    const w = setup();
    thermostat(w);
    const s = w.engine();
    s.engine.start();
    w.setValue(TEMP, 30);
    await until(() => s.state(SET)?.runs === 1, 'the SetValue run');
    const [own] = s.fires(HOT);
    s.engine.receive(OTHER, own!);
    await drain();
    assert.equal(s.state(SET)?.runs, 1);
    assert.equal(s.fires(HOT).length, 1);
  });

  test('after stop nothing runs', async () => {
    const w = setup();
    thermostat(w);
    const s = w.engine();
    s.engine.start();
    s.engine.stop();
    s.engine.stop();
    w.setValue(TEMP, 30);
    await drain();
    assert.deepEqual(s.floods, []);
    assert.deepEqual(s.writes, []);
  });
});
