/**
 * Where automation runs. An executor or trigger runs on its owner (placement "owner", the
 * default), or, with placement "any", on exactly one live server chosen by rendezvous hashing:
 * every server scores hash(server, job) for every live server and the highest score wins, so all
 * servers agree without talking, and when a server leaves only its jobs move.
 *
 * Fencing, so that a job does not run on two servers at once:
 * - A server runs a job it newly won only after its view of the live servers has been stable for
 *   `settleMs`; it stops a job it lost at once. A server that returns and wins its jobs back
 *   therefore starts them only after the others, who see it at the same moment, have stopped.
 * - With three or more known servers, a server runs "any" jobs only while it sees a majority of
 *   them live (itself included), so the smaller side of a partition stands down instead of
 *   running the same jobs as the larger one. With two servers there is no majority to be had;
 *   each runs what it wins (availability over the split-brain risk).
 * - After a start, "any" jobs wait `startupMs`, so discovery can find the others first.
 * `prefer` names a server that takes the job whenever it is live (jobs move back to it).
 *
 * Pure logic: it is told the time and the live and known servers, and answers `runsHere`.
 */

import { createHash } from 'node:crypto';

export type PlacementMode = 'owner' | 'any';

export interface PlacementOptions {
  settleMs: number;
  startupMs: number;
}

export function rendezvousScore(server: string, job: string): bigint {
  return createHash('sha256').update(`${server}/${job}`).digest().readBigUInt64BE(0);
}

/** The live server with the highest score for `job` (ties, impossible in practice, by id). */
export function rendezvousWinner(job: string, servers: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1n;
  for (const server of servers) {
    const score = rendezvousScore(server, job);
    if (score > bestScore || (score === bestScore && best !== undefined && server < best)) {
      best = server;
      bestScore = score;
    }
  }
  return best;
}

export class Placement {
  readonly #selfId: string;
  readonly #options: PlacementOptions;
  readonly #startedAt: number;
  #live: string[] = [];
  #known = 1;
  #changedAt: number;

  constructor(selfId: string, now: number, options: PlacementOptions) {
    this.#selfId = selfId;
    this.#options = options;
    this.#startedAt = now;
    this.#changedAt = now;
    this.#live = [selfId];
  }

  /** The servers now live (connected, self included) and how many are known in all. */
  update(live: readonly string[], known: number, now: number): void {
    const next = [...new Set([this.#selfId, ...live])].sort();
    if (next.join() !== this.#live.join()) this.#changedAt = now;
    this.#live = next;
    this.#known = Math.max(known, next.length);
  }

  get live(): readonly string[] {
    return this.#live;
  }

  /** True when this side of the mesh may run "any" jobs (see the quorum rule above). */
  hasQuorum(): boolean {
    return this.#known < 3 || this.#live.length * 2 > this.#known;
  }

  /** The server that should run a job, as this server sees it (undefined: nobody may). */
  runnerOf(job: {
    id: string;
    owner: string;
    placement?: PlacementMode;
    prefer?: string;
  }): string | undefined {
    if ((job.placement ?? 'owner') === 'owner') return job.owner;
    if (!this.hasQuorum()) return undefined;
    if (job.prefer && this.#live.includes(job.prefer)) return job.prefer;
    return rendezvousWinner(job.id, this.#live);
  }

  /** True when this server should run the job now. */
  runsHere(
    job: { id: string; owner: string; placement?: PlacementMode; prefer?: string },
    now: number,
  ): boolean {
    if (this.runnerOf(job) !== this.#selfId) return false;
    if ((job.placement ?? 'owner') === 'owner') return true;
    return (
      now - this.#startedAt >= this.#options.startupMs && now - this.#changedAt >= this.#options.settleMs
    );
  }

  /** When a job won but still settling may start, so the engine can look again then. */
  settlesAt(): number {
    return Math.max(this.#startedAt + this.#options.startupMs, this.#changedAt + this.#options.settleMs);
  }
}
