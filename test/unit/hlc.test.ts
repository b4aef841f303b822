/**
 * The hybrid logical clock (src/clock.ts) on a wall clock the test sets by hand, forwards and
 * backwards: local stamps strictly increase, a received stamp is always passed, a stamp too far
 * ahead is clamped, and the text encoding sorts as the stamps order.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type Clock, decodeHlc, encodeHlc, HybridClock, hlcToIso, wallOf } from '../../src/clock.ts';

const EPOCH = 1_700_000_000_000;
const MAX_DRIFT_MS = 500;
const MAX_LOGICAL = 999_999;

/** A wall clock that shows whatever the test sets, and never fires a timer. */
class SetClock implements Clock {
  constructor(public wall = EPOCH) {}

  now(): number {
    return this.wall;
  }

  setTimer(): () => void {
    return () => {};
  }
}

function less(a: string, b: string): boolean {
  const x = decodeHlc(a)!;
  const y = decodeHlc(b)!;
  return x.wall < y.wall || (x.wall === y.wall && x.logical < y.logical);
}

/** Wall clock moves: mostly standing still, sometimes forwards, sometimes backwards. */
const wallSteps = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 5_000 }) },
    { weight: 2, arbitrary: fc.integer({ min: -60_000, max: -1 }) },
  ),
  { minLength: 1, maxLength: 200 },
);

/** Logical counters, often at or near the top of their six digits. */
const logicalNearFull = fc.oneof(
  fc.integer({ min: 0, max: MAX_LOGICAL }),
  fc.integer({ min: MAX_LOGICAL - 2, max: MAX_LOGICAL }),
);

describe('HybridClock', () => {
  test('local stamps strictly increase while wall time stands still or goes backwards', () => {
    fc.assert(
      fc.property(wallSteps, (steps) => {
        const wall = new SetClock();
        const hlc = new HybridClock(wall, MAX_DRIFT_MS);
        let previous = hlc.now();
        for (const step of steps) {
          wall.wall += step;
          const stamp = hlc.now();
          assert.ok(stamp > previous, `${stamp} after ${previous}`);
          assert.ok(less(previous, stamp));
          previous = stamp;
        }
      }),
    );
  });

  test('a stamp follows wall time when it moves forward', () => {
    const wall = new SetClock();
    const hlc = new HybridClock(wall, MAX_DRIFT_MS);
    assert.equal(hlc.now(), encodeHlc(EPOCH, 0));
    assert.equal(hlc.now(), encodeHlc(EPOCH, 1));
    wall.wall -= 10;
    assert.equal(hlc.now(), encodeHlc(EPOCH, 2), 'a clock going back does not drag stamps back');
    wall.wall = EPOCH + 7;
    assert.equal(hlc.now(), encodeHlc(EPOCH + 7, 0));
  });

  test('after receiving a stamp within the drift bound, the next local stamp is later', () => {
    fc.assert(
      fc.property(
        wallSteps,
        fc.array(
          fc.record({
            offset: fc.integer({ min: -10_000, max: MAX_DRIFT_MS }),
            logical: logicalNearFull,
            step: fc.integer({ min: -1_000, max: 1_000 }),
          }),
          { minLength: 1, maxLength: 50 },
        ),
        (warmup, remotes) => {
          const wall = new SetClock();
          const hlc = new HybridClock(wall, MAX_DRIFT_MS);
          for (const step of warmup) {
            wall.wall += step;
            hlc.now();
          }
          let previous = hlc.now();
          for (const { offset, logical, step } of remotes) {
            wall.wall += step;
            const remote = encodeHlc(wall.wall + offset, logical);
            hlc.receive(remote);
            const next = hlc.now();
            assert.ok(next > remote, `${next} after receiving ${remote}`);
            assert.ok(next > previous, `${next} after ${previous}`);
            previous = next;
          }
          assert.equal(hlc.clamped, 0);
        },
      ),
    );
  });

  test('a stamp far in the future is clamped to now + maxDrift and counted', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: MAX_DRIFT_MS + 1, max: 10 * 365 * 86_400_000 }),
        fc.integer({ min: 0, max: MAX_LOGICAL }),
        fc.integer({ min: 0, max: 1_000 }),
        (ahead, logical, events) => {
          const wall = new SetClock();
          const hlc = new HybridClock(wall, MAX_DRIFT_MS);
          const before = hlc.now();
          hlc.receive(encodeHlc(EPOCH + ahead, logical));
          assert.equal(hlc.clamped, 1);
          let previous = before;
          for (let i = 0; i <= events; i += 100) {
            const stamp = hlc.now();
            const { wall: w } = decodeHlc(stamp)!;
            assert.ok(w <= EPOCH + MAX_DRIFT_MS, `wall ${w - EPOCH} ms ahead is past the bound`);
            assert.ok(stamp > previous);
            previous = stamp;
          }
        },
      ),
    );
  });

  test('a stamp just within the bound is followed, not clamped', () => {
    const wall = new SetClock();
    const hlc = new HybridClock(wall, MAX_DRIFT_MS);
    hlc.receive(encodeHlc(EPOCH + MAX_DRIFT_MS, 3));
    assert.equal(hlc.clamped, 0);
    assert.equal(hlc.now(), encodeHlc(EPOCH + MAX_DRIFT_MS, 4));
  });

  test('a full logical counter borrows the next millisecond instead of repeating a stamp', () => {
    const wall = new SetClock();
    const hlc = new HybridClock(wall, MAX_DRIFT_MS);
    const remote = encodeHlc(EPOCH + 100, MAX_LOGICAL);
    hlc.receive(remote);
    assert.equal(hlc.now(), encodeHlc(EPOCH + 101, 0));
    // A million local events within one millisecond of wall time.
    const local = new HybridClock(wall, MAX_DRIFT_MS);
    let previous = local.now();
    for (let i = 0; i < MAX_LOGICAL + 3; i++) {
      const stamp = local.now();
      if (!(stamp > previous)) assert.fail(`${stamp} repeats or precedes ${previous} at event ${i}`);
      previous = stamp;
    }
  });

  test('malformed remote stamps are ignored', () => {
    const wall = new SetClock();
    const hlc = new HybridClock(wall, MAX_DRIFT_MS);
    for (const bad of ['', 'x', '1700000000000-000000', '9999999999999999-000000', `${'9'.repeat(15)}-0`]) {
      hlc.receive(bad);
    }
    assert.equal(hlc.clamped, 0);
    assert.equal(hlc.now(), encodeHlc(EPOCH, 0));
  });
});

describe('HLC encoding', () => {
  const wallArb = fc.integer({ min: 0, max: 10 ** 15 - 1 });
  const logicalArb = fc.integer({ min: 0, max: MAX_LOGICAL });

  test('decode(encode(wall, logical)) round-trips', () => {
    fc.assert(
      fc.property(wallArb, logicalArb, (wall, logical) => {
        const stamp = encodeHlc(wall, logical);
        assert.match(stamp, /^\d{15}-\d{6}$/);
        assert.deepEqual(decodeHlc(stamp), { wall, logical });
      }),
    );
  });

  test('text order equals (wall, logical) order', () => {
    fc.assert(
      fc.property(wallArb, logicalArb, wallArb, logicalArb, (w1, l1, w2, l2) => {
        const a = encodeHlc(w1, l1);
        const b = encodeHlc(w2, l2);
        const numeric = w1 === w2 ? Math.sign(l1 - l2) : Math.sign(w1 - w2);
        const text = a === b ? 0 : a < b ? -1 : 1;
        assert.equal(text, numeric);
      }),
    );
  });

  test('hlcToIso shows the wall time', () => {
    assert.equal(hlcToIso(encodeHlc(EPOCH, 5)), new Date(EPOCH).toISOString());
    assert.equal(hlcToIso('garbage'), new Date(0).toISOString());
  });

  test('hlcToIso answers each stamp of any sequence with its own wall time (the cache never leaks)', () => {
    const stampArb = fc.oneof(
      fc
        .tuple(fc.integer({ min: 0, max: 3 }), logicalArb)
        .map(([ms, logical]) => encodeHlc(EPOCH + ms, logical)),
      fc.constantFrom('garbage', '', encodeHlc(0, 0)),
    );
    fc.assert(
      fc.property(fc.array(stampArb, { maxLength: 20 }), (stamps) => {
        for (const stamp of stamps) {
          assert.equal(hlcToIso(stamp), new Date(decodeHlc(stamp)?.wall ?? 0).toISOString());
        }
      }),
    );
  });

  test('anything but 15 digits, a dash and 6 digits is no stamp', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 30 }).filter((s) => !/^\d{15}-\d{6}$/.test(s)),
        (text) => {
          assert.equal(decodeHlc(text), undefined);
          assert.equal(wallOf(text), undefined);
        },
      ),
    );
    assert.equal(decodeHlc(`${encodeHlc(EPOCH, 1)}\n`), undefined);
  });
});
