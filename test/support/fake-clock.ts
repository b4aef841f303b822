/**
 * Deterministic time and randomness for unit tests. FakeClock implements the Clock of
 * src/clock.ts: time stands still until `advance(ms)` moves it, running every timer that falls due
 * on the way in time order (timers set while advancing run too when they fall within the window).
 * Timers due at the same instant run in the order they were set. Nothing here ever sleeps.
 */

import type { Cancel, Clock, Random } from '../../src/clock.ts';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** 2023-11-14T22:13:20Z: a round, recent epoch time, so timestamps look real in failures. */
export const FAKE_EPOCH = 1_700_000_000_000;

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, Timer>();

  constructor(start = FAKE_EPOCH) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** Runs `fn` once `ms` (at least 0) have passed; `advance(0)` runs timers set with 0. */
  setTimer(fn: () => void, ms: number): Cancel {
    const seq = this.#seq++;
    this.#timers.set(seq, { at: this.#now + Math.max(0, ms), seq, fn });
    return () => {
      this.#timers.delete(seq);
    };
  }

  /**
   * Moves time forward by `ms`, running each due timer at its own instant: during a timer's
   * callback `now()` is the time it was due. An exception from a timer propagates (the test
   * fails) after time has been set to that timer's instant.
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`FakeClock.advance: ${ms} is not a non-negative duration`);
    const until = this.#now + ms;
    for (;;) {
      const next = this.#nextDue(until);
      if (!next) break;
      this.#timers.delete(next.seq);
      this.#now = next.at;
      next.fn();
    }
    this.#now = until;
  }

  /** Advances to the next timer and runs it (and any due at the same instant); false if none. */
  runNext(): boolean {
    let first: Timer | undefined;
    for (const t of this.#timers.values()) if (!first || before(t, first)) first = t;
    if (!first) return false;
    this.advance(first.at - this.#now);
    return true;
  }

  /** Timers set and not yet run or cancelled. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the earliest pending timer is due, if any. */
  nextAt(): number | undefined {
    let next: number | undefined;
    for (const t of this.#timers.values()) if (next === undefined || t.at < next) next = t.at;
    return next;
  }

  #nextDue(until: number): Timer | undefined {
    let next: Timer | undefined;
    for (const t of this.#timers.values()) {
      if (t.at <= until && (!next || before(t, next))) next = t;
    }
    return next;
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * A seeded source of randomness in [0, 1) (mulberry32): the same seed gives the same sequence,
 * so a failing jitter or drop pattern can be replayed.
 */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A Random that returns `values` in turn, then repeats the last one. */
export function scriptedRandom(...values: number[]): Random {
  let i = 0;
  return () => {
    const value = values[Math.min(i, values.length - 1)] ?? 0;
    i++;
    return value;
  };
}
