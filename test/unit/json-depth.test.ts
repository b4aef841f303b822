/** How deep a JSON value nests (src/json-depth.ts), checked against a plain recursive count. */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { deeperThan, jsonProblem } from '../../src/json-depth.ts';

/** The nesting depth, recursively: a scalar is 0, `[]` and `{}` are 1. */
function depth(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + Math.max(0, ...children.map(depth));
}

describe('deeperThan', () => {
  test('property: agrees with a recursive count, at every limit', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 12 }), fc.integer({ min: 0, max: 14 }), (value, limit) => {
        assert.equal(deeperThan(value, limit), depth(value) > limit);
      }),
      { numRuns: 500 },
    );
  });

  test('property: jsonProblem passes what JSON carries as it is, and names what it does not', () => {
    fc.assert(
      // (Through JSON once: -0 is a value JSON writes as 0, harmlessly.)
      fc.property(
        fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown),
        (value) => {
          assert.equal(jsonProblem(value, 32), undefined);
          assert.deepEqual(JSON.parse(JSON.stringify(value)), value);
        },
      ),
      { numRuns: 300 },
    );
    assert.match(String(jsonProblem({ a: [1, Number.POSITIVE_INFINITY] }, 32)), /number JSON cannot carry/);
    assert.match(String(jsonProblem(Number.NaN, 32)), /number JSON cannot carry/);
    assert.match(String(jsonProblem([[[]]], 2)), /nested deeper than 2/);
    assert.equal(jsonProblem(new Array(1_000_000).fill(0), 32), undefined, 'wide, not deep');
  });

  test('a value deeper than the call stack is measured without recursion', () => {
    let value: unknown = 1;
    for (let i = 0; i < 200_000; i++) value = { a: [value] };
    assert.equal(deeperThan(value, 256), true);
    assert.equal(deeperThan([[[]]], 3), false);
    assert.equal(deeperThan('scalar', 0), false);
  });
});
