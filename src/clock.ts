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

/** A source of randomness in [0, 1), injectable for deterministic jitter in tests. */
export type Random = () => number;

/**
 * A hybrid logical clock (Kulkarni et al.): timestamps that follow wall time but never go
 * backwards and always move past every timestamp received, so causally later changes carry later
 * stamps even across servers whose clocks differ a little. Encoded as fixed-width text
 * ("WWWWWWWWWWWWWWW-LLLLLL": wall ms, logical counter) that sorts as it orders.
 *
 * A remote stamp more than `maxDriftMs` ahead of local wall time is not followed past that bound
 * (the clock is clamped and the event counted), so one server with a wrong clock cannot drag every
 * other's timestamps into the future.
 */
export class HybridClock {
  #wall = 0;
  #logical = 0;
  readonly #clock: Clock;
  readonly #maxDriftMs: number;
  /** How many remote stamps were clamped for running too far ahead. */
  clamped = 0;

  constructor(clock: Clock, maxDriftMs: number) {
    this.#clock = clock;
    this.#maxDriftMs = maxDriftMs;
  }

  /** A stamp for a local event. */
  now(): string {
    const physical = Math.floor(this.#clock.now());
    if (physical > this.#wall) {
      this.#wall = physical;
      this.#logical = 0;
    } else if (this.#logical < MAX_LOGICAL) {
      this.#logical++;
    } else {
      // The six-digit counter is full: borrow the next millisecond, so stamps keep increasing.
      this.#wall++;
      this.#logical = 0;
    }
    return encodeHlc(this.#wall, this.#logical);
  }

  /** Takes a stamp received from another server into account. */
  receive(stamp: string): void {
    const remote = decodeHlc(stamp);
    if (!remote) return;
    const physical = Math.floor(this.#clock.now());
    let { wall, logical } = remote;
    if (wall > physical + this.#maxDriftMs) {
      this.clamped++;
      wall = physical + this.#maxDriftMs;
      logical = 0;
    }
    if (wall > this.#wall) {
      this.#wall = wall;
      this.#logical = logical;
    } else if (wall === this.#wall) {
      this.#logical = Math.max(this.#logical, logical);
    }
    if (physical > this.#wall) {
      this.#wall = physical;
      this.#logical = 0;
    }
  }
}

const HLC_FORMAT = /^\d{15}-\d{6}$/;
const MAX_LOGICAL = 999_999;

export function encodeHlc(wall: number, logical: number): string {
  return `${String(wall).padStart(15, '0')}-${String(Math.min(logical, MAX_LOGICAL)).padStart(6, '0')}`;
}

export function decodeHlc(stamp: string): { wall: number; logical: number } | undefined {
  const wall = wallOf(stamp);
  return wall === undefined ? undefined : { wall, logical: Number(stamp.slice(16)) };
}

/** The wall time (ms since the epoch) of a stamp, without the rest of `decodeHlc`. */
export function wallOf(stamp: string): number | undefined {
  return HLC_FORMAT.test(stamp) ? Number(stamp.slice(0, 15)) : undefined;
}

/**
 * A formatter of times (ms since the epoch) as ISO dates that keeps its last answer: asked in turn
 * for times that mostly share their millisecond, it formats each millisecond once.
 */
function isoFormatter(): (ms: number) => string {
  let last = Number.NaN;
  let iso = '';
  return (ms) => {
    if (ms !== last) {
      last = ms;
      iso = new Date(ms).toISOString();
    }
    return iso;
  };
}

/** A time (ms since the epoch) as an ISO date: asked for every event's `at` (now). */
export const isoTime = isoFormatter();

/**
 * The wall time of a stamp as an ISO date: asked for the `updatedAt` of every node an op or a row
 * turns into. A formatter of its own: an event's `at` (now) and its node's `updatedAt` (the writer's
 * time) alternate, and with one kept answer for both, each missed (3 % of a busy replica's CPU).
 */
const stampIso = isoFormatter();
export function hlcToIso(stamp: string): string {
  return stampIso(wallOf(stamp) ?? 0);
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * A time given as milliseconds since the epoch or as an ISO 8601 date (and time), in ms; or
 * undefined. (Date.parse alone takes almost anything: "-1" is a date in 2001.)
 */
export function parseTime(text: string): number | undefined {
  const ms = /^\d+$/.test(text) ? Number(text) : ISO_TIME.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isFinite(ms) ? ms : undefined;
}
