/** The pino logger: JSON lines, or readable colour when stdout is a terminal. */

import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export function createLogger(level: string, options: { pretty?: boolean; name?: string } = {}): Logger {
  const usePretty = options.pretty ?? process.stdout.isTTY === true;
  const base = { level, name: options.name };
  if (!usePretty) return pino(base);
  return pino(base, pretty({ colorize: true, sync: true, ignore: 'pid,hostname' }));
}

/**
 * Logs one message per key at most once per `intervalMs`, with the count of those skipped, so bad
 * network input can be logged without letting a flood fill the disk.
 */
export class ThrottledLog {
  readonly #last = new Map<string, { at: number; skipped: number }>();
  readonly #log: Logger;
  readonly #intervalMs: number;

  constructor(log: Logger, intervalMs = 10_000) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  debug(key: string, now: number, fields: Record<string, unknown>, message: string): void {
    const entry = this.#last.get(key);
    if (entry && now - entry.at < this.#intervalMs) {
      entry.skipped++;
      return;
    }
    if (this.#last.size > 1024) this.#last.clear();
    this.#last.set(key, { at: now, skipped: 0 });
    this.#log.debug({ ...fields, skippedSinceLast: entry?.skipped ?? 0 }, message);
  }
}
