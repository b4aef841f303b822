/**
 * A token bucket per source (a beacon's address and port, an HTTP client's address), so a flood
 * from one source costs at most a map lookup per datagram or request. At most `maxSources`
 * sources are tracked; the least recently heard is forgotten.
 */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #ratePerMs: number;
  readonly #burst: number;
  readonly #maxSources: number;

  constructor(options: { ratePerSecond: number; burst: number; maxSources: number }) {
    this.#ratePerMs = options.ratePerSecond / 1000;
    this.#burst = options.burst;
    this.#maxSources = options.maxSources;
  }

  /** Takes a token for `source`; false when its bucket is empty. */
  allow(source: string, now: number): boolean {
    const bucket = this.#buckets.get(source) ?? { tokens: this.#burst, at: now };
    this.#buckets.delete(source);
    bucket.tokens = Math.min(this.#burst, bucket.tokens + Math.max(0, now - bucket.at) * this.#ratePerMs);
    bucket.at = now;
    const allowed = bucket.tokens >= 1;
    if (allowed) bucket.tokens -= 1;
    this.#buckets.set(source, bucket);
    if (this.#buckets.size > this.#maxSources) {
      this.#buckets.delete(this.#buckets.keys().next().value as string);
    }
    return allowed;
  }
}
