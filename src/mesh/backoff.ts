/** Reconnect delay: exponential from `baseMs`, capped at `maxMs`, varied by ±`jitter`. */
export interface BackoffOptions {
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  reconnectJitter: number;
}

export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number): number {
  const raw = Math.min(options.reconnectMaxMs, options.reconnectBaseMs * 2 ** Math.min(attempt, 30));
  const factor = 1 - options.reconnectJitter + 2 * options.reconnectJitter * random();
  return Math.max(0, Math.round(raw * factor));
}
