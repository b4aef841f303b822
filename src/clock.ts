/**
 * Time as a dependency. Protocol code asks a Clock for the time and for timers, so unit tests run
 * it on a fake clock without sleeping, and the same code runs for real on the system clock.
 */

/** Cancels a timer; safe to call more than once. */
export type Cancel = () => void;

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. */
  setTimer(fn: () => void, ms: number): Cancel;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref?.();
    return () => clearTimeout(t);
  },
};

/** Runs `fn` every `ms` milliseconds until cancelled. */
export function every(clock: Clock, ms: number, fn: () => void): Cancel {
  let cancel: Cancel = () => {};
  let stopped = false;
  const tick = (): void => {
    if (stopped) return;
    cancel = clock.setTimer(tick, ms);
    fn();
  };
  cancel = clock.setTimer(tick, ms);
  return () => {
    stopped = true;
    cancel();
  };
}

/** A source of randomness in [0, 1), injectable for deterministic jitter in tests. */
export type Random = () => number;
