/**
 * How automation nodes are wired (src/automation/wiring.ts): default sources by type and parent
 * type, inputs and targets, and `findLoop` against a reference reachability on random acyclic
 * wirings; then the checks a node passes before it is stored (src/automation/validate.ts), each
 * naming what is wrong, against a small tree held in memory.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { automationProblem } from '../../src/automation/validate.ts';
import {
  AUTOMATION_TYPES,
  findLoop,
  inputsOf,
  isAutomation,
  jobsOnLoops,
  sourcesOf,
  targetsOf,
  type Wired,
} from '../../src/automation/wiring.ts';
import { EXECUTOR_TYPES, NODE_TYPES, type NodeType, TRIGGER_TYPES } from '../../src/store/node-types.ts';
import type { ShoalNode } from '../../src/store/store.ts';

/** A UUID-shaped id from a small number, so failures read well. */
function nid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

function wired(id: string, type: NodeType, parent: string | null, meta: Record<string, unknown> = {}): Wired {
  return { id, type, parent, meta };
}

const P = nid(0xf00);
const DP = nid(0xd01);
const IN1 = nid(0xd02);
const IN2 = nid(0xd03);
const TRIG = nid(0xa01);
const X = nid(0xe01);

describe('sourcesOf', () => {
  test('thresholds and silent alarms watch their parent data point, and nothing under anything else', () => {
    for (const type of ['HighThreshold', 'LowThreshold', 'SilentAlarm'] as const) {
      assert.deepEqual(sourcesOf(wired(X, type, DP), 'DataPoint'), [DP], type);
      for (const parentType of ['Project', 'Server'] as const) {
        assert.deepEqual(sourcesOf(wired(X, type, P), parentType), [], `${type} under ${parentType}`);
      }
      assert.deepEqual(sourcesOf(wired(X, type, DP), undefined), [], `${type} under an unknown parent`);
      assert.deepEqual(sourcesOf(wired(X, type, null), 'DataPoint'), [], `${type} at the root`);
    }
  });

  test('cron timers, buttons and incoming webhooks have no sources, wherever they hang', () => {
    for (const type of ['CronTimer', 'Button', 'IncomingWebHook'] as const) {
      for (const parentType of ['DataPoint', 'Project', 'Server'] as const) {
        assert.deepEqual(sourcesOf(wired(X, type, DP), parentType), [], `${type} under ${parentType}`);
      }
    }
  });

  test('an executor under a trigger or a data point is woken by it; elsewhere by its inputs', () => {
    const metas: Record<string, Record<string, unknown>> = {
      Calculation: { formula: 'a + b', inputs: { a: IN1, b: IN2 } },
      Compute: { op: 'sum', inputs: [IN1, IN2] },
      LogicGate: { gate: 'AND', inputs: [IN1, IN2] },
      OutgoingWebHook: { url: 'http://127.0.0.1/' },
      SetValue: { target: DP, value: 1 },
    };
    for (const type of EXECUTOR_TYPES) {
      const node = wired(X, type, TRIG, metas[type]);
      for (const parentType of [...TRIGGER_TYPES, 'DataPoint'] as const) {
        assert.deepEqual(sourcesOf(node, parentType), [TRIG], `${type} under ${parentType}`);
      }
      const inputs = ['Calculation', 'Compute', 'LogicGate'].includes(type) ? [IN1, IN2] : [];
      for (const parentType of ['Project', 'Server', undefined] as const) {
        assert.deepEqual(sourcesOf(node, parentType), inputs, `${type} under ${parentType}`);
      }
      assert.deepEqual(sourcesOf({ ...node, parent: null }, 'DataPoint'), inputs, `${type} at the root`);
    }
  });

  test('meta.sources, when given, replaces the defaults (ids only)', () => {
    for (const type of AUTOMATION_TYPES) {
      const node = wired(X, type, DP, { sources: [IN1, 7, null, IN2], inputs: [DP] });
      assert.deepEqual(sourcesOf(node, 'DataPoint'), [IN1, IN2], type);
      assert.deepEqual(sourcesOf({ ...node, meta: { sources: [] } }, 'DataPoint'), [], type);
    }
  });
});

describe('inputsOf, targetsOf, isAutomation', () => {
  test('Calculation inputs are the values of its name map', () => {
    assert.deepEqual(inputsOf(wired(X, 'Calculation', P, { inputs: { a: IN1, b: IN2, c: 3 } })), [IN1, IN2]);
    assert.deepEqual(inputsOf(wired(X, 'Calculation', P, { inputs: [IN1] })), []);
    assert.deepEqual(inputsOf(wired(X, 'Calculation', P, {})), []);
    assert.deepEqual(inputsOf(wired(X, 'Calculation', P, { inputs: null })), []);
  });

  test('Compute and LogicGate inputs are a list; other types have none', () => {
    for (const type of ['Compute', 'LogicGate'] as const) {
      assert.deepEqual(inputsOf(wired(X, type, P, { inputs: [IN1, 5, IN2] })), [IN1, IN2]);
      assert.deepEqual(inputsOf(wired(X, type, P, { inputs: { a: IN1 } })), []);
      assert.deepEqual(inputsOf(wired(X, type, P, {})), []);
    }
    for (const type of ['SetValue', 'OutgoingWebHook', 'HighThreshold', 'DataPoint'] as const) {
      assert.deepEqual(inputsOf(wired(X, type, P, { inputs: [IN1] })), [], type);
    }
  });

  test('the target, when it is an id', () => {
    assert.deepEqual(targetsOf(wired(X, 'SetValue', P, { target: DP })), [DP]);
    assert.deepEqual(targetsOf(wired(X, 'Compute', P, {})), []);
    assert.deepEqual(targetsOf(wired(X, 'Compute', P, { target: 5 })), []);
  });

  test('automation types are the triggers and the executors', () => {
    for (const type of NODE_TYPES) {
      assert.equal(isAutomation(type), TRIGGER_TYPES.includes(type) || EXECUTOR_TYPES.includes(type), type);
    }
  });
});

describe('findLoop', () => {
  /**
   * A random acyclic wiring: data points 0..k-1 under a project; executors read data points below
   * the one they write; thresholds under a data point drive a SetValue that writes a higher one.
   * `edges` is the same wiring, built here without wiring.ts, as the reference.
   */
  interface Wiring {
    nodes: Wired[];
    dps: string[];
    edges: Map<string, Set<string>>;
  }

  const wiringArb = fc
    .integer({ min: 2, max: 8 })
    .chain((k) =>
      fc.record({
        k: fc.constant(k),
        executors: fc.array(
          fc.record({
            type: fc.constantFrom<NodeType>('Calculation', 'Compute', 'LogicGate'),
            target: fc.option(fc.integer({ min: 1, max: k - 1 }), { nil: undefined }),
            inputs: fc.uniqueArray(fc.integer({ min: 0, max: k - 1 }), { minLength: 1, maxLength: 3 }),
          }),
          { maxLength: 8 },
        ),
        chains: fc.array(
          fc.record({ from: fc.integer({ min: 0, max: k - 2 }), up: fc.integer({ min: 1, max: k - 1 }) }),
          { maxLength: 4 },
        ),
      }),
    )
    .map(({ k, executors, chains }): Wiring => {
      const dps = Array.from({ length: k }, (_, i) => nid(0x100 + i));
      const nodes: Wired[] = [wired(P, 'Project', null), ...dps.map((id) => wired(id, 'DataPoint', P))];
      const edges = new Map<string, Set<string>>();
      const edge = (from: string, to: string): void => {
        if (!edges.has(from)) edges.set(from, new Set());
        edges.get(from)!.add(to);
      };
      executors.forEach((e, n) => {
        const id = nid(0x200 + n);
        // Inputs strictly below the target keep the wiring acyclic.
        const inputs = e.target === undefined ? e.inputs : e.inputs.filter((i) => i < e.target!);
        if (inputs.length === 0) inputs.push(0);
        const target = e.target !== undefined && e.target > Math.max(...inputs) ? e.target : undefined;
        const meta: Record<string, unknown> =
          e.type === 'Calculation'
            ? { formula: '1', inputs: Object.fromEntries(inputs.map((i) => [`v${i}`, dps[i]])) }
            : { inputs: inputs.map((i) => dps[i]) };
        if (target !== undefined) meta.target = dps[target];
        nodes.push(wired(id, e.type, P, meta));
        for (const i of inputs) edge(dps[i]!, id);
        if (target !== undefined) edge(id, dps[target]!);
      });
      chains.forEach((c, n) => {
        const to = Math.min(k - 1, c.from + c.up);
        const trigger = nid(0x300 + n);
        const setter = nid(0x400 + n);
        nodes.push(wired(trigger, 'HighThreshold', dps[c.from]!, { threshold: 1 }));
        nodes.push(wired(setter, 'SetValue', trigger, { target: dps[to], value: 1 }));
        edge(dps[c.from]!, trigger);
        edge(trigger, setter);
        edge(setter, dps[to]!);
      });
      return { nodes, dps, edges };
    });

  function reaches(edges: Map<string, Set<string>>, from: string, to: string): boolean {
    const seen = new Set<string>([from]);
    const queue = [from];
    while (queue.length > 0) {
      const at = queue.shift()!;
      if (at === to) return true;
      for (const next of edges.get(at) ?? []) {
        if (!seen.has(next)) {
          seen.add(next);
          queue.push(next);
        }
      }
    }
    return false;
  }

  /** Checks that `path` is a real cycle through `candidate` in `edges`. */
  function assertCycle(path: string[], candidate: string, edges: Map<string, Set<string>>): void {
    assert.equal(path[0], candidate);
    assert.equal(path.at(-1), candidate);
    assert.ok(path.length >= 2);
    assert.equal(new Set(path.slice(0, -1)).size, path.length - 1, `no node twice in ${path}`);
    for (let i = 0; i + 1 < path.length; i++) {
      assert.ok(edges.get(path[i]!)?.has(path[i + 1]!), `${path[i]} -> ${path[i + 1]} is not an edge`);
    }
  }

  test('finds no loop in an acyclic wiring, through any of its nodes', () => {
    fc.assert(
      fc.property(wiringArb, ({ nodes }) => {
        for (const node of nodes) assert.equal(findLoop(nodes, node), undefined, node.id);
      }),
      { numRuns: 300 },
    );
  });

  test('a new node reading one data point and writing another closes a loop exactly when it should', () => {
    fc.assert(
      fc.property(
        wiringArb,
        fc.nat(),
        fc.nat(),
        fc.constantFrom<NodeType>('Calculation', 'Compute', 'LogicGate'),
        ({ nodes, dps, edges }, a, b, type) => {
          const read = dps[a % dps.length]!;
          const write = dps[b % dps.length]!;
          const id = nid(0x999);
          const candidate = wired(
            id,
            type,
            P,
            type === 'Calculation'
              ? { formula: 'r', inputs: { r: read }, target: write }
              : { inputs: [read], target: write },
          );
          const all = new Map([...edges].map(([k, v]) => [k, new Set(v)]));
          all.set(read, new Set([...(all.get(read) ?? []), id]));
          all.set(id, new Set([write]));
          const loop = findLoop(nodes, candidate);
          assert.equal(loop !== undefined, reaches(edges, write, read), `read ${read}, write ${write}`);
          if (loop) assertCycle(loop, id, all);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('an edited node stands in for the stored one of its id', () => {
    // A reads dp0 and writes dp1; B reads dp1 and writes dp2. Editing A to read dp2 closes a loop.
    const [d0, d1, d2] = [nid(0x100), nid(0x101), nid(0x102)];
    const a = wired(nid(0x200), 'Compute', P, { op: 'sum', inputs: [d0], target: d1 });
    const b = wired(nid(0x201), 'Compute', P, { op: 'sum', inputs: [d1], target: d2 });
    const nodes = [wired(P, 'Project', null), ...[d0, d1, d2].map((d) => wired(d, 'DataPoint', P)), a, b];
    assert.equal(findLoop(nodes, a), undefined);
    const edited = { ...a, meta: { ...a.meta, inputs: [d2] } };
    assert.deepEqual(findLoop(nodes, edited), [a.id, d1, b.id, d2, a.id]);
    // Editing B to write elsewhere again breaks it.
    assert.equal(
      findLoop([...nodes.slice(0, -2), edited], { ...b, meta: { ...b.meta, target: d0 } }),
      undefined,
    );
  });

  test('explicit sources are edges too, and a node writing its own source is a loop', () => {
    const d0 = nid(0x100);
    const nodes = [wired(P, 'Project', null), wired(d0, 'DataPoint', P)];
    const setter = wired(nid(0x200), 'SetValue', P, { target: d0, value: 1, sources: [d0] });
    assert.deepEqual(findLoop(nodes, setter), [setter.id, d0, setter.id]);
    assert.equal(findLoop(nodes, { ...setter, meta: { target: d0, value: 1 } }), undefined);
  });
});

describe('automationProblem', () => {
  const SERVER = 'aaaaaaaa-0000-4000-8000-000000000001';
  const TEMP = nid(0xd10);
  const AC = nid(0xd11);
  const HUMID = nid(0xd12);
  const HOT = nid(0xa10);
  const MISSING = nid(0xbad);

  function node(id: string, type: NodeType, parent: string | null, name: string, meta = {}): ShoalNode {
    return { id, type, parent, owner: SERVER, name, meta, updatedAt: '2023-11-14T22:13:20.000Z', version: 1 };
  }

  const tree = new Map<string, ShoalNode>(
    [
      node(SERVER, 'Server', null, 'server'),
      node(P, 'Project', SERVER, 'House'),
      node(TEMP, 'DataPoint', P, 'Temp'),
      node(AC, 'DataPoint', P, 'AC'),
      node(HUMID, 'DataPoint', P, 'Humidity'),
      node(HOT, 'HighThreshold', TEMP, 'Too hot', { threshold: 25 }),
    ].map((n) => [n.id, n]),
  );

  function problemOf(candidate: Wired): string | undefined {
    return automationProblem(
      candidate,
      (id) => tree.get(id),
      () => [...tree.values()],
    );
  }

  test('well wired nodes pass, and other types are not looked at', () => {
    assert.equal(
      problemOf(
        wired(X, 'Calculation', P, { formula: 'a + b * 2', inputs: { a: TEMP, b: HUMID }, target: AC }),
      ),
      undefined,
    );
    assert.equal(
      problemOf(wired(X, 'Compute', P, { op: 'average', inputs: [TEMP], windowMs: 60_000 })),
      undefined,
    );
    assert.equal(problemOf(wired(X, 'LogicGate', P, { gate: 'NOT', inputs: [TEMP], target: AC })), undefined);
    assert.equal(problemOf(wired(X, 'SetValue', HOT, { target: AC, value: true })), undefined);
    assert.equal(
      problemOf(wired(X, 'CronTimer', P, { cron: '0 7 * * *', timezone: 'Europe/Berlin' })),
      undefined,
    );
    assert.equal(problemOf(wired(X, 'Project', P, { target: MISSING })), undefined);
    assert.equal(problemOf(wired(X, 'DataPoint', P, { inputs: [MISSING] })), undefined);
  });

  test('a formula that does not parse, or names something not among its inputs', () => {
    assert.equal(
      problemOf(wired(X, 'Calculation', P, { formula: 'a +', inputs: { a: TEMP } })),
      'meta.formula: the formula ends too soon (at 4)',
    );
    assert.equal(
      problemOf(wired(X, 'Calculation', P, { formula: 'a + b', inputs: { a: TEMP } })),
      'meta.formula: "b" is not one of meta.inputs (a)',
    );
    assert.equal(
      problemOf(wired(X, 'Calculation', P, { formula: 'x * 2' })),
      'meta.formula: "x" is not one of meta.inputs (none)',
    );
    assert.equal(
      problemOf(wired(X, 'Calculation', P, { formula: 'constructor', inputs: { a: TEMP } })),
      'meta.formula: "constructor" is not one of meta.inputs (a)',
    );
  });

  test('NOT with two inputs, and a Compute over a time window with two', () => {
    assert.equal(
      problemOf(wired(X, 'LogicGate', P, { gate: 'NOT', inputs: [TEMP, HUMID] })),
      'meta.inputs: NOT takes exactly one input',
    );
    assert.equal(problemOf(wired(X, 'LogicGate', P, { gate: 'AND', inputs: [TEMP, HUMID] })), undefined);
    assert.equal(
      problemOf(wired(X, 'Compute', P, { op: 'average', inputs: [TEMP, HUMID], windowMs: 1000 })),
      'meta.inputs: a Compute over a time window takes exactly one input',
    );
    assert.equal(problemOf(wired(X, 'Compute', P, { op: 'average', inputs: [TEMP, HUMID] })), undefined);
  });

  test('a target that is not a data point, and nodes that do not exist', () => {
    assert.equal(
      problemOf(wired(X, 'SetValue', P, { target: P, value: 1 })),
      `meta.target: ${P} is a Project, not a DataPoint`,
    );
    assert.equal(
      problemOf(wired(X, 'SetValue', P, { target: HOT, value: 1 })),
      `meta.target: ${HOT} is a HighThreshold, not a DataPoint`,
    );
    assert.equal(
      problemOf(wired(X, 'SetValue', P, { target: MISSING, value: 1 })),
      `meta.target: no node ${MISSING}`,
    );
    assert.equal(
      problemOf(wired(X, 'Compute', P, { op: 'sum', inputs: [TEMP, MISSING], target: AC })),
      `meta.inputs: no node ${MISSING}`,
    );
    assert.equal(
      problemOf(wired(X, 'Calculation', P, { formula: 'a', inputs: { a: MISSING } })),
      `meta.inputs: no node ${MISSING}`,
    );
    assert.equal(
      problemOf(wired(X, 'SetValue', P, { target: AC, value: 1, sources: [TEMP, MISSING] })),
      `meta.sources: no node ${MISSING}`,
    );
    // Inputs need not be data points (a gate may read anything with a value).
    assert.equal(problemOf(wired(X, 'LogicGate', P, { gate: 'OR', inputs: [HOT] })), undefined);
  });

  test('a bad cron pattern or timezone', () => {
    assert.match(problemOf(wired(X, 'CronTimer', P, { cron: '61 * * * *' })) ?? '', /^meta\.cron: .*minute/);
    assert.match(problemOf(wired(X, 'CronTimer', P, { cron: 'often' })) ?? '', /^meta\.cron: /);
    assert.match(
      problemOf(wired(X, 'CronTimer', P, { cron: '0 7 * * *', timezone: 'Mars/Olympus' })) ?? '',
      /^meta\.cron: .*Mars\/Olympus/,
    );
  });

  test('a wiring loop, named by the nodes around it', () => {
    // Temp -> Too hot -> (this SetValue) -> Temp.
    assert.equal(
      problemOf(wired(X, 'SetValue', HOT, { target: TEMP, value: 20 })),
      'wiring loop: this node -> Temp -> Too hot -> this node (its writes would wake it again)',
    );
    // A Calculation writing one of its own inputs.
    assert.equal(
      problemOf(wired(X, 'Calculation', P, { formula: 'a + 1', inputs: { a: TEMP }, target: TEMP })),
      'wiring loop: this node -> Temp -> this node (its writes would wake it again)',
    );
  });
});

describe('jobsOnLoops', () => {
  /** Whether `from` reaches `to` over one edge or more, by breadth-first search. */
  function reaches(next: Map<string, string[]>, from: string, to: string): boolean {
    const queue = [...(next.get(from) ?? [])];
    const seen = new Set<string>();
    while (queue.length > 0) {
      const id = queue.shift()!;
      if (id === to) return true;
      if (seen.has(id)) continue;
      seen.add(id);
      queue.push(...(next.get(id) ?? []));
    }
    return false;
  }

  test('property: an id is on a loop exactly when it reaches itself', () => {
    const id = fc.integer({ min: 0, max: 9 }).map((n) => `n${n}`);
    const job = fc.record({
      id,
      sources: fc.array(id, { maxLength: 3 }),
      targets: fc.array(id, { maxLength: 2 }),
    });
    fc.assert(
      fc.property(fc.array(job, { maxLength: 8 }), (jobs) => {
        const next = new Map<string, string[]>();
        const edge = (a: string, b: string) => next.set(a, [...(next.get(a) ?? []), b]);
        for (const j of jobs) {
          for (const s of j.sources) edge(s, j.id);
          for (const t of j.targets) edge(j.id, t);
        }
        const ids = new Set([...next.keys(), ...[...next.values()].flat()]);
        const expected = [...ids].filter((x) => reaches(next, x, x)).sort();
        assert.deepEqual([...jobsOnLoops(jobs)].sort(), expected);
      }),
      { numRuns: 500 },
    );
  });

  test('a long chain is walked without recursion', () => {
    const jobs = Array.from({ length: 50_000 }, (_, i) => ({
      id: `j${i}`,
      sources: [`j${i - 1}`],
      targets: [],
    }));
    assert.equal(jobsOnLoops(jobs).size, 0);
    jobs[0] = { id: 'j0', sources: ['j49999'], targets: [] };
    assert.equal(jobsOnLoops(jobs).size, 50_000);
  });
});
