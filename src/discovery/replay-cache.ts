/**
 * Remembers recently seen beacon nonces so a captured beacon cannot be replayed within the clock
 * window. Bounded: the oldest entries go first when it is full, which is safe as long as the cache
 * holds more than one clock window of beacons (see Config.replayCacheSize).
 */
export class ReplayCache {
  readonly #seen = new Map<string, number>();
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** True when `key` was seen before; otherwise remembers it (until `expiresAt`) and returns false. */
  seen(key: string, now: number, expiresAt: number): boolean {
    const expiry = this.#seen.get(key);
    if (expiry !== undefined && expiry > now) return true;
    this.#seen.delete(key);
    this.#seen.set(key, expiresAt);
    while (this.#seen.size > this.#capacity) {
      const oldest = this.#seen.keys().next().value as string;
      this.#seen.delete(oldest);
    }
    return false;
  }

  get size(): number {
    return this.#seen.size;
  }
}
