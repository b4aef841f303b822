/**
 * The node tree's types (src/store/node-types.ts): where each type may hang, what its meta must
 * hold (fields a type does not define are kept), and which values a data point takes.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  EXECUTOR_TYPES,
  isNodeType,
  META_SCHEMAS,
  metaProblem,
  NODE_TYPES,
  type NodeType,
  PARENT_TYPES,
  TRIGGER_TYPES,
  valueProblem,
} from '../../src/store/node-types.ts';

const ID = '0f8e2c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b';

/** For each type: meta that fits, and meta that does not (with the field the problem names). */
const EXAMPLES: Record<NodeType, { valid: Record<string, unknown>[]; invalid: [unknown, string][] }> = {
  Server: {
    valid: [{}, { port: 8080, model: 'Raspberry Pi 4', version: '0.1.0', os: 'Linux', platform: 'linux' }],
    invalid: [
      [{ port: 'eighty' }, 'meta.port'],
      [{ port: 1.5 }, 'meta.port'],
      [{ model: 4 }, 'meta.model'],
    ],
  },
  Project: {
    valid: [{}, { description: 'garden' }],
    invalid: [
      [{ description: 7 }, 'meta.description'],
      [{ description: 'x'.repeat(4097) }, 'meta.description'],
    ],
  },
  DataPoint: {
    valid: [{}, { kind: 'number', unit: '°C', retentionMs: 1000 }, { kind: 'json' }, { kind: 'boolean' }],
    invalid: [
      [{ kind: 'float' }, 'meta.kind'],
      [{ unit: 'x'.repeat(33) }, 'meta.unit'],
      [{ retentionMs: 999 }, 'meta.retentionMs'],
      [{ retentionMs: 1500.5 }, 'meta.retentionMs'],
    ],
  },
  HighThreshold: {
    valid: [{ threshold: 30 }, { threshold: -1.5, hysteresis: 0.5, sources: [ID], placement: 'any' }],
    invalid: [
      [{}, 'meta'],
      [{ threshold: '30' }, 'meta.threshold'],
      [{ threshold: 1, hysteresis: -1 }, 'meta.hysteresis'],
      [{ threshold: 1, placement: 'everywhere' }, 'meta.placement'],
      [{ threshold: 1, sources: ['not-an-id'] }, 'meta.sources.0'],
    ],
  },
  LowThreshold: {
    valid: [{ threshold: 0 }],
    invalid: [
      [{ hysteresis: 1 }, 'meta'],
      [{ threshold: null }, 'meta.threshold'],
    ],
  },
  CronTimer: {
    valid: [{ cron: '*/5 * * * *' }, { cron: '0 7 * * 1-5', timezone: 'Europe/Amsterdam' }],
    invalid: [
      [{}, 'meta'],
      [{ cron: '' }, 'meta.cron'],
      [{ cron: 'x'.repeat(257) }, 'meta.cron'],
    ],
  },
  SilentAlarm: {
    valid: [{ maxAgeMs: 60_000 }],
    invalid: [
      [{ maxAgeMs: 0 }, 'meta.maxAgeMs'],
      [{}, 'meta'],
    ],
  },
  IncomingWebHook: {
    valid: [{ path: 'door-bell_1' }],
    invalid: [
      [{ path: '../etc' }, 'meta.path'],
      [{ path: '' }, 'meta.path'],
      [{}, 'meta'],
    ],
  },
  Button: {
    valid: [{}],
    invalid: [
      [null, 'meta'],
      ['press', 'meta'],
    ],
  },
  Calculation: {
    valid: [
      { formula: 'a + b' },
      { formula: 'inside - outside', target: ID, inputs: { inside: ID, outside: ID } },
    ],
    invalid: [
      [{ formula: '' }, 'meta.formula'],
      [{ formula: 'x', target: 'elsewhere' }, 'meta.target'],
      [{ formula: 'x', inputs: [ID] }, 'meta.inputs'],
      [{ formula: 'x', inputs: { x: 'not-an-id' } }, 'meta.inputs.x'],
      [{}, 'meta'],
    ],
  },
  Compute: {
    valid: [
      { op: 'average', inputs: [ID, ID] },
      { op: 'stddev', inputs: [ID], windowMs: 60_000, target: ID },
    ],
    invalid: [
      [{ op: 'median', inputs: [ID] }, 'meta.op'],
      [{ op: 'sum' }, 'meta'],
      [{ op: 'sum', inputs: [] }, 'meta.inputs'],
      [{ op: 'sum', inputs: [ID], windowMs: 0 }, 'meta.windowMs'],
    ],
  },
  LogicGate: {
    valid: [{ gate: 'XNOR', inputs: [ID] }],
    invalid: [
      [{ gate: 'MAYBE', inputs: [] }, 'meta.gate'],
      [{ gate: 'AND', inputs: Array.from({ length: 257 }, () => ID) }, 'meta.inputs'],
    ],
  },
  OutgoingWebHook: {
    valid: [
      { url: 'https://example.org/hook' },
      { url: 'http://10.0.0.2/x', method: 'POST', headers: { 'x-a': 'b' }, retries: 3, timeoutMs: 500 },
    ],
    invalid: [
      [{ url: 'ftp://example.org' }, 'meta.url'],
      [{ url: 'https://a', method: 'post' }, 'meta.method'],
      [{ url: 'https://a', headers: { a: 1 } }, 'meta.headers.a'],
      [{ url: 'https://a', retries: 21 }, 'meta.retries'],
    ],
  },
  SetValue: {
    valid: [
      { target: ID, value: 1 },
      { target: ID, value: { any: ['json'] } },
    ],
    invalid: [
      [{ value: 1 }, 'meta'],
      [{ target: 'x', value: 1 }, 'meta.target'],
    ],
  },
};

describe('node types', () => {
  test('every type has a parent rule, a meta schema and examples', () => {
    assert.deepEqual(Object.keys(PARENT_TYPES).sort(), [...NODE_TYPES].sort());
    assert.deepEqual(Object.keys(META_SCHEMAS).sort(), [...NODE_TYPES].sort());
    assert.deepEqual(Object.keys(EXAMPLES).sort(), [...NODE_TYPES].sort());
    assert.equal(new Set(NODE_TYPES).size, NODE_TYPES.length);
  });

  test('a Server hangs only at the root, and everything else needs a parent', () => {
    assert.deepEqual(PARENT_TYPES.Server, []);
    for (const type of NODE_TYPES) {
      if (type === 'Server') continue;
      assert.ok(PARENT_TYPES[type].length > 0, `${type} has parent types`);
      for (const parent of PARENT_TYPES[type]) assert.ok(isNodeType(parent), `${type} under ${parent}`);
    }
  });

  test('every type can be reached from a Server (no type is only placeable under itself)', () => {
    const placeable = new Set<NodeType>(['Server']);
    for (let changed = true; changed; ) {
      changed = false;
      for (const type of NODE_TYPES) {
        if (!placeable.has(type) && PARENT_TYPES[type].some((p) => placeable.has(p))) {
          placeable.add(type);
          changed = true;
        }
      }
    }
    assert.deepEqual([...placeable].sort(), [...NODE_TYPES].sort());
  });

  test('triggers hang under data points, executors under triggers; nothing hangs under an executor', () => {
    for (const trigger of TRIGGER_TYPES) assert.ok(PARENT_TYPES[trigger].includes('DataPoint'), trigger);
    for (const executor of EXECUTOR_TYPES) {
      for (const trigger of TRIGGER_TYPES) assert.ok(PARENT_TYPES[executor].includes(trigger), executor);
    }
    for (const type of NODE_TYPES) {
      for (const executor of EXECUTOR_TYPES) assert.ok(!PARENT_TYPES[type].includes(executor), type);
    }
    assert.deepEqual(
      [...TRIGGER_TYPES, ...EXECUTOR_TYPES, 'Server', 'Project', 'DataPoint'].sort(),
      [...NODE_TYPES].sort(),
    );
  });

  test('isNodeType accepts exactly the listed names', () => {
    for (const type of NODE_TYPES) assert.ok(isNodeType(type));
    for (const other of ['server', 'Folder', '', 1, null, undefined, {}])
      assert.equal(isNodeType(other), false);
  });
});

describe('metaProblem', () => {
  for (const type of NODE_TYPES) {
    test(`${type}: valid meta passes, invalid meta names the field`, () => {
      const { valid, invalid } = EXAMPLES[type];
      for (const meta of valid) assert.equal(metaProblem(type, meta), undefined, JSON.stringify(meta));
      for (const [meta, field] of invalid) {
        const problem = metaProblem(type, meta);
        assert.ok(problem, `${type} ${JSON.stringify(meta)} should be refused`);
        assert.ok(problem.startsWith(`${field}:`), `"${problem}" should name ${field}`);
        assert.ok(problem.endsWith(`(for a ${type})`), problem);
      }
    });
  }

  test('fields a type does not define are accepted (a newer peer may add them)', () => {
    const extraKey = fc
      .string({ minLength: 1, maxLength: 12 })
      .filter((k) => !/^(port|model|version|os|platform|description|kind|unit|retentionMs)$/.test(k));
    fc.assert(
      fc.property(
        fc.constantFrom(...NODE_TYPES),
        fc.dictionary(extraKey, fc.jsonValue(), { maxKeys: 4 }),
        (type, extra) => {
          for (const meta of EXAMPLES[type].valid) {
            const schema = META_SCHEMAS[type] as { properties?: Record<string, unknown> };
            const known = new Set(Object.keys(schema.properties ?? {}));
            const added = Object.fromEntries(Object.entries(extra).filter(([k]) => !known.has(k)));
            assert.equal(metaProblem(type, { ...meta, ...added }), undefined, JSON.stringify(added));
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test('meta that is not an object is refused for every type', () => {
    for (const type of NODE_TYPES) {
      for (const meta of [null, 1, 'x', [], undefined]) assert.ok(metaProblem(type, meta), `${type} ${meta}`);
    }
  });
});

describe('valueProblem', () => {
  test('number takes finite numbers only', () => {
    for (const v of [0, -1.5, 1e300]) assert.equal(valueProblem('number', v), undefined);
    for (const v of [Number.NaN, Number.POSITIVE_INFINITY, '1', null, true, undefined]) {
      assert.equal(valueProblem('number', v), 'value: must be a finite number');
    }
  });

  test('boolean takes true and false only', () => {
    assert.equal(valueProblem('boolean', true), undefined);
    assert.equal(valueProblem('boolean', false), undefined);
    for (const v of [0, 1, 'true', null])
      assert.equal(valueProblem('boolean', v), 'value: must be true or false');
  });

  test('string takes strings only', () => {
    assert.equal(valueProblem('string', ''), undefined);
    assert.equal(valueProblem('string', 'on'), undefined);
    for (const v of [1, null, ['a']]) assert.equal(valueProblem('string', v), 'value: must be a string');
  });

  test('json takes any JSON value but nothing at all', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => valueProblem('json', v) === undefined));
    assert.equal(valueProblem('json', null), undefined);
    assert.equal(valueProblem('json', undefined), 'value: is required');
  });
});
