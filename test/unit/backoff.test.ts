/** backoffDelay (src/mesh/backoff.ts): exponential from the base, capped, jittered within bounds. */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type BackoffOptions, backoffDelay } from '../../src/mesh/backoff.ts';

const options = fc
  .record({
    reconnectBaseMs: fc.integer({ min: 1, max: 10_000 }),
    extra: fc.integer({ min: 0, max: 1_000_000 }),
    reconnectJitter: fc.double({ min: 0, max: 1, noNaN: true }),
  })
  .map(
    ({ reconnectBaseMs, extra, reconnectJitter }): BackoffOptions => ({
      reconnectBaseMs,
      reconnectMaxMs: reconnectBaseMs + extra,
      reconnectJitter,
    }),
  );
const attempt = fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 1e9 }));
const random = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

test('without jitter: base·2^attempt, capped at the maximum', () => {
  const o = { reconnectBaseMs: 250, reconnectMaxMs: 15_000, reconnectJitter: 0 };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7, 100].map((n) => backoffDelay(n, o, () => 0.123)),
    [250, 500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000],
  );
});

test('the jitter extremes: random 0 gives (1 − jitter)·raw, random → 1 gives (1 + jitter)·raw', () => {
  const o = { reconnectBaseMs: 1000, reconnectMaxMs: 60_000, reconnectJitter: 0.3 };
  assert.equal(
    backoffDelay(0, o, () => 0),
    700,
  );
  assert.equal(
    backoffDelay(0, o, () => 0.5),
    1000,
  );
  assert.equal(
    backoffDelay(0, o, () => 0.999999),
    1300,
  );
});

test('property: the delay is a whole number within raw·(1 ± jitter), raw = min(max, base·2^attempt)', () => {
  fc.assert(
    fc.property(options, attempt, random, (o, n, r) => {
      const delay = backoffDelay(n, o, () => r);
      const raw = Math.min(o.reconnectMaxMs, o.reconnectBaseMs * 2 ** Math.min(n, 30));
      assert.ok(Number.isInteger(delay) && delay >= 0);
      assert.ok(delay >= Math.floor(raw * (1 - o.reconnectJitter)), `${delay} < bound for ${raw}`);
      assert.ok(delay <= Math.ceil(raw * (1 + o.reconnectJitter)), `${delay} > bound for ${raw}`);
    }),
    { numRuns: 1000 },
  );
});

test('property: for a fixed random draw the delay never shrinks as attempts grow', () => {
  fc.assert(
    fc.property(options, fc.integer({ min: 0, max: 60 }), random, (o, n, r) => {
      assert.ok(backoffDelay(n + 1, o, () => r) >= backoffDelay(n, o, () => r));
    }),
    { numRuns: 500 },
  );
});

test('property: the random source is asked exactly once per delay', () => {
  fc.assert(
    fc.property(options, attempt, (o, n) => {
      let calls = 0;
      backoffDelay(n, o, () => {
        calls++;
        return 0.5;
      });
      assert.equal(calls, 1);
    }),
  );
});
