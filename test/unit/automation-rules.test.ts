/**
 * What triggers and executors compute (src/automation/rules.ts): thresholds with hysteresis
 * against their written specification, aggregates and logic gates against reference
 * implementations, how values count as booleans and numbers, templates (no reach into
 * prototypes), cron patterns and Calculation formulas.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type ComputeOp,
  calculate,
  compute,
  cronProblem,
  type Gate,
  logicGate,
  numeric,
  renderTemplate,
  thresholdStep,
  truthy,
} from '../../src/automation/rules.ts';

type ThresholdKind = 'HighThreshold' | 'LowThreshold';

/** Feeds `values` to a fresh trigger; the indexes at which it fired. */
function fires(kind: ThresholdKind, threshold: number, hysteresis: number, values: number[]): number[] {
  const fired: number[] = [];
  let armed: boolean | undefined;
  values.forEach((value, i) => {
    const step = thresholdStep(kind, { threshold, hysteresis }, armed, value);
    armed = step.armed;
    if (step.fire) fired.push(i);
  });
  return fired;
}

/**
 * The specification, from the module comment: a High trigger fires on a value above the threshold
 * if it never fired, or if since it last fired some value fell to threshold - hysteresis or below.
 */
function specFires(kind: ThresholdKind, threshold: number, hysteresis: number, values: number[]): number[] {
  const past = (v: number): boolean => (kind === 'HighThreshold' ? v > threshold : v < threshold);
  const back = (v: number): boolean =>
    kind === 'HighThreshold' ? v <= threshold - hysteresis : v >= threshold + hysteresis;
  const fired: number[] = [];
  values.forEach((value, i) => {
    if (!past(value)) return;
    const last = fired.at(-1);
    if (last === undefined || values.slice(last + 1, i).some(back)) fired.push(i);
  });
  return fired;
}

const kindArb = fc.constantFrom<ThresholdKind>('HighThreshold', 'LowThreshold');

/** A threshold, a hysteresis and values near them (hitting both edges exactly now and then). */
const thresholdCase = fc
  .record({
    kind: kindArb,
    threshold: fc.integer({ min: -50, max: 50 }),
    hysteresis: fc.oneof(
      fc.constant(0),
      fc.integer({ min: 1, max: 5 }),
      fc.double({ min: 0, max: 5, noNaN: true }),
    ),
  })
  .chain((c) =>
    fc
      .array(
        fc.oneof(
          fc.integer({ min: -8, max: 8 }).map((d) => c.threshold + d),
          fc.constantFrom(c.threshold, c.threshold - c.hysteresis, c.threshold + c.hysteresis),
          fc.double({ min: c.threshold - 10, max: c.threshold + 10, noNaN: true }),
        ),
        { maxLength: 60 },
      )
      .map((values) => ({ ...c, values })),
  );

describe('thresholdStep', () => {
  test('fires exactly as specified, for High and Low, with and without hysteresis', () => {
    fc.assert(
      fc.property(thresholdCase, ({ kind, threshold, hysteresis, values }) => {
        assert.deepEqual(
          fires(kind, threshold, hysteresis, values),
          specFires(kind, threshold, hysteresis, values),
        );
      }),
      { numRuns: 2000 },
    );
  });

  test('never fires twice without the value first passing back over threshold ∓ hysteresis', () => {
    fc.assert(
      fc.property(thresholdCase, ({ kind, threshold, hysteresis, values }) => {
        const fired = fires(kind, threshold, hysteresis, values);
        for (let n = 1; n < fired.length; n++) {
          const between = values.slice(fired[n - 1]! + 1, fired[n]!);
          const rearmed =
            kind === 'HighThreshold'
              ? between.some((v) => v <= threshold - hysteresis)
              : between.some((v) => v >= threshold + hysteresis);
          assert.ok(rearmed, `fired at ${fired[n - 1]} and ${fired[n]} of ${JSON.stringify(values)}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('a value oscillating inside the hysteresis band fires at most once', () => {
    fc.assert(
      fc.property(
        kindArb,
        fc.integer({ min: -50, max: 50 }),
        fc.double({ min: 0.01, max: 10, noNaN: true }),
        fc.array(fc.double({ min: -0.999, max: 0.999, noNaN: true }), { maxLength: 100 }),
        (kind, threshold, hysteresis, offsets) => {
          const values = offsets.map((o) => threshold + o * hysteresis);
          assert.ok(fires(kind, threshold, hysteresis, values).length <= 1);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('fixed sequences', () => {
    // High at 25 with 2 of hysteresis: arms again only at 23 or below.
    assert.deepEqual(fires('HighThreshold', 25, 2, [20, 26, 24, 27, 23.5, 26, 23, 26]), [1, 7]);
    assert.deepEqual(fires('HighThreshold', 25, 0, [25, 26, 25, 26, 26]), [1, 3]);
    // A fresh trigger is armed, so a value already past the threshold fires at once.
    assert.deepEqual(fires('HighThreshold', 25, 2, [30, 30, 30]), [0]);
    // Low at 10 with 1 of hysteresis: arms again only at 11 or above.
    assert.deepEqual(fires('LowThreshold', 10, 1, [12, 9, 10.5, 8, 11, 9]), [1, 5]);
    assert.deepEqual(fires('LowThreshold', 10, 0, [10, 9.99, 10, 9]), [1, 3]);
    // Without a hysteresis in meta it is 0.
    const step = thresholdStep('HighThreshold', { threshold: 5 }, false, 5);
    assert.deepEqual(step, { fire: false, armed: true });
  });
});

describe('compute', () => {
  const OPS: ComputeOp[] = ['average', 'min', 'max', 'sum', 'count', 'stddev'];

  function reference(op: ComputeOp, values: number[]): number | undefined {
    if (op === 'count') return values.length;
    if (values.length === 0) return undefined;
    const sorted = [...values].sort((a, b) => a - b);
    let sum = 0;
    for (const v of values) sum += v;
    const mean = sum / values.length;
    switch (op) {
      case 'sum':
        return sum;
      case 'average':
        return mean;
      case 'min':
        return sorted[0];
      case 'max':
        return sorted.at(-1);
      case 'stddev': {
        // E[x²] - E[x]², a different route to the same number.
        let squares = 0;
        for (const v of values) squares += v * v;
        return Math.sqrt(Math.max(0, squares / values.length - mean * mean));
      }
    }
  }

  test('every op agrees with a reference', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...OPS),
        fc.array(
          fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.double({ min: -1e3, max: 1e3, noNaN: true })),
          { maxLength: 40 },
        ),
        (op, values) => {
          const got = compute(op, values);
          const want = reference(op, values);
          if (want === undefined) {
            assert.deepEqual(got, { ok: false, error: 'no values to compute over' });
            return;
          }
          assert.ok(got.ok);
          const tolerance = op === 'stddev' ? 1e-6 * Math.max(1, Math.abs(want)) + 1e-4 : 1e-9;
          assert.ok(Math.abs(got.value - want) <= tolerance, `${op}(${values}) = ${got.value}, want ${want}`);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('fixed cases', () => {
    assert.deepEqual(compute('average', [1, 2, 3, 6]), { ok: true, value: 3 });
    assert.deepEqual(compute('stddev', [2, 4, 4, 4, 5, 5, 7, 9]), { ok: true, value: 2 });
    assert.deepEqual(compute('count', []), { ok: true, value: 0 });
    assert.deepEqual(compute('min', [3, -1, 2]), { ok: true, value: -1 });
    assert.deepEqual(compute('max', [3, -1, 2]), { ok: true, value: 3 });
    assert.deepEqual(compute('sum', [0.5, 0.25]), { ok: true, value: 0.75 });
    for (const op of OPS.filter((o) => o !== 'count')) assert.equal(compute(op, []).ok, false);
  });
});

describe('logicGate', () => {
  const GATES: Gate[] = ['AND', 'OR', 'NOT', 'XOR', 'NAND', 'NOR', 'XNOR'];

  function reference(gate: Gate, inputs: boolean[]): boolean | undefined {
    if (inputs.length === 0) return undefined;
    const ones = inputs.filter((v) => v).length;
    switch (gate) {
      case 'NOT':
        return inputs.length === 1 ? !inputs[0] : undefined;
      case 'AND':
        return ones === inputs.length;
      case 'OR':
        return ones > 0;
      case 'NAND':
        return ones !== inputs.length;
      case 'NOR':
        return ones === 0;
      case 'XOR':
        return inputs.reduce((a, b) => a !== b, false);
      case 'XNOR':
        return !inputs.reduce((a, b) => a !== b, false);
    }
  }

  function check(gate: Gate, inputs: boolean[]): void {
    const want = reference(gate, inputs);
    const got = logicGate(gate, inputs);
    if (want === undefined) assert.equal(got.ok, false, `${gate}(${inputs})`);
    else assert.deepEqual(got, { ok: true, value: want }, `${gate}(${inputs})`);
  }

  test('full truth tables for every gate, 0 to 5 inputs', () => {
    for (const gate of GATES) {
      for (let arity = 0; arity <= 5; arity++) {
        for (let bits = 0; bits < 2 ** arity; bits++) {
          check(
            gate,
            Array.from({ length: arity }, (_, i) => ((bits >> i) & 1) === 1),
          );
        }
      }
    }
  });

  test('any gate and number of inputs agrees with a reference', () => {
    fc.assert(fc.property(fc.constantFrom(...GATES), fc.array(fc.boolean(), { maxLength: 40 }), check), {
      numRuns: 1000,
    });
  });

  test('errors: no inputs, and NOT with other than one', () => {
    assert.deepEqual(logicGate('AND', []), { ok: false, error: 'a logic gate needs inputs' });
    assert.deepEqual(logicGate('NOT', [true, false]), { ok: false, error: 'NOT takes exactly one input' });
    assert.deepEqual(logicGate('NOT', [true]), { ok: true, value: false });
    assert.deepEqual(logicGate('NOT', [false]), { ok: true, value: true });
  });
});

describe('truthy and numeric', () => {
  test('truthy', () => {
    for (const v of [true, 1, -1, 0.5, 'on', 'ON', 'True', 'true', '1', 'yes', 'Yes', {}, []]) {
      assert.equal(truthy(v), true, JSON.stringify(v));
    }
    for (const v of [false, 0, -0, Number.NaN, 'off', 'false', '0', '', 'no', '2', ' on', null, undefined]) {
      assert.equal(truthy(v), false, String(v));
    }
  });

  test('numeric', () => {
    assert.equal(numeric(3.5), 3.5);
    assert.equal(numeric(-2), -2);
    assert.equal(numeric(true), 1);
    assert.equal(numeric(false), 0);
    for (const v of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      '5',
      null,
      undefined,
      {},
      [1],
    ]) {
      assert.equal(numeric(v), undefined, String(v));
    }
  });
});

describe('renderTemplate', () => {
  const vars = {
    value: 21.5,
    text: 'on "fire"',
    source: { id: 'x1', name: 'Kitchen', value: { a: [1, 2] } },
    list: ['first', 'second'],
    nothing: null,
    flag: false,
  };

  test('paths, raw strings, JSON for everything else', () => {
    assert.equal(renderTemplate('v={{value}}', vars), 'v=21.5');
    assert.equal(renderTemplate('{{text}}', vars), 'on "fire"');
    assert.equal(renderTemplate('{{ source.name }}/{{source.id}}', vars), 'Kitchen/x1');
    assert.equal(renderTemplate('{{source.value}}', vars), '{"a":[1,2]}');
    assert.equal(renderTemplate('{{source.value.a}}', vars), '[1,2]');
    assert.equal(renderTemplate('{{source}}', vars), JSON.stringify(vars.source));
    assert.equal(renderTemplate('{{list.1}}', vars), 'second');
    assert.equal(renderTemplate('{{nothing}}|{{flag}}', vars), 'null|false');
    assert.equal(renderTemplate('no placeholders', vars), 'no placeholders');
    assert.equal(renderTemplate('{{value}}{{value}}', vars), '21.521.5');
    assert.equal(renderTemplate('{value} {{ value', vars), '{value} {{ value');
  });

  test('unknown names render empty', () => {
    assert.equal(renderTemplate('[{{missing}}]', vars), '[]');
    assert.equal(renderTemplate('[{{source.missing}}]', vars), '[]');
    assert.equal(renderTemplate('[{{value.deeper}}]', vars), '[]');
    assert.equal(renderTemplate('[{{nothing.x}}]', vars), '[]');
    assert.equal(renderTemplate('[{{text.length}}]', vars), '[]');
  });

  test('no prototype access', () => {
    for (const path of [
      'constructor',
      '__proto__',
      '__proto__.x',
      'constructor.name',
      'toString',
      'source.constructor',
      'source.__proto__',
      'list.constructor.name',
      'hasOwnProperty',
    ]) {
      assert.equal(renderTemplate(`[{{${path}}}]`, vars), '[]', path);
    }
    assert.equal(renderTemplate('{{__proto__}}', JSON.parse('{"__proto__":{"x":1}}')), '{"x":1}');
  });
});

describe('cronProblem', () => {
  test('valid patterns', () => {
    for (const pattern of [
      '* * * * *',
      '0 0 * * *',
      '*/5 * * * * *',
      '0 8 * * MON-FRI',
      '@daily',
      '0 0 31 2 *',
    ]) {
      assert.equal(cronProblem(pattern), undefined, pattern);
    }
    assert.equal(cronProblem('0 7 * * *', 'Europe/Berlin'), undefined);
    assert.equal(cronProblem('0 7 * * *', 'UTC'), undefined);
  });

  test('invalid patterns say why', () => {
    for (const pattern of ['', 'not a cron', '61 * * * *', '* * * * * * * *', '* 25 * * *', '* * * 13 *']) {
      const problem = cronProblem(pattern);
      assert.ok(problem && problem.length > 0, pattern);
    }
    assert.match(cronProblem('61 * * * *')!, /minute/);
  });

  test('an unknown timezone is a problem', () => {
    assert.match(cronProblem('0 7 * * *', 'Mars/Olympus') ?? '', /Mars\/Olympus/);
  });
});

describe('calculate', () => {
  test('evaluates a formula over named inputs', () => {
    assert.deepEqual(calculate('a * 2 + b', { a: 3, b: 1 }), { ok: true, value: 7 });
    assert.deepEqual(calculate('a > b', { a: 3, b: 1 }), { ok: true, value: true });
    // The same text again, from the cache, with other inputs.
    assert.deepEqual(calculate('a * 2 + b', { a: 0, b: 0 }), { ok: true, value: 0 });
  });

  test('formula errors are named as such, evaluation errors as they are', () => {
    assert.deepEqual(calculate('a +', { a: 1 }), {
      ok: false,
      error: 'formula: the formula ends too soon (at 4)',
    });
    assert.deepEqual(calculate('a +', { a: 1 }), {
      ok: false,
      error: 'formula: the formula ends too soon (at 4)',
    });
    assert.deepEqual(calculate('a / b', { a: 1, b: 0 }), { ok: false, error: 'the result is Infinity' });
    assert.deepEqual(calculate('a + b', { a: 1 }), { ok: false, error: 'no input "b"' });
  });

  test('many distinct formulas (the cache is bounded) still compute right', () => {
    for (let n = 0; n < 2500; n++) {
      assert.deepEqual(calculate(`x + ${n}`, { x: 1 }), { ok: true, value: n + 1 });
    }
    assert.deepEqual(calculate('x + 7', { x: 1 }), { ok: true, value: 8 });
  });
});
