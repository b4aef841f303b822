/**
 * Where automation runs (src/automation/placement.ts), with times given as numbers: rendezvous
 * hashing (the winner is stable under removing others, and only a removed winner's jobs move),
 * owner placement, the startup and settle fences, quorum, `prefer`, and a simulated mesh of 3 to 5
 * servers whose views change together, in which no job ever runs on two servers at once.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Placement, type PlacementOptions, rendezvousWinner } from '../../src/automation/placement.ts';

const A = 'a0000000-0000-4000-8000-000000000000';
const B = 'b0000000-0000-4000-8000-000000000000';
const C = 'c0000000-0000-4000-8000-000000000000';
const D = 'd0000000-0000-4000-8000-000000000000';
const E = 'e0000000-0000-4000-8000-000000000000';

const OPTIONS: PlacementOptions = { settleMs: 3000, startupMs: 10_000 };
const T0 = 1_700_000_000_000;

const JOB_IDS = Array.from(
  { length: 200 },
  (_, n) => `00000000-0000-4000-9000-${n.toString(16).padStart(12, '0')}`,
);

function assignment(servers: readonly string[], jobs: readonly string[]): Map<string, string | undefined> {
  return new Map(jobs.map((job) => [job, rendezvousWinner(job, servers)]));
}

/** A job id that `want` wins among `servers`. */
function jobWonBy(want: string, servers: readonly string[], avoid: readonly string[] = []): string {
  for (let n = 0; ; n++) {
    const id = `job-${n}`;
    if (rendezvousWinner(id, servers) === want && !avoid.includes(id)) return id;
  }
}

const serversArb = fc.uniqueArray(fc.uuid(), { minLength: 1, maxLength: 8 });

describe('rendezvousWinner', () => {
  test('the winner is one of the servers, whatever their order; nobody wins among none', () => {
    assert.equal(rendezvousWinner('job', []), undefined);
    fc.assert(
      fc.property(
        serversArb.chain((s) => fc.tuple(fc.constant(s), fc.shuffledSubarray(s, { minLength: s.length }))),
        fc.string(),
        ([servers, shuffled], job) => {
          const winner = rendezvousWinner(job, servers);
          assert.ok(winner !== undefined && servers.includes(winner));
          assert.equal(rendezvousWinner(job, shuffled), winner);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('removing a server that is not the winner never changes the winner', () => {
    fc.assert(
      fc.property(
        serversArb.filter((s) => s.length >= 2),
        fc.string(),
        fc.nat(),
        (servers, job, pick) => {
          const winner = rendezvousWinner(job, servers);
          const others = servers.filter((s) => s !== winner);
          const removed = others[pick % others.length]!;
          assert.equal(
            rendezvousWinner(
              job,
              servers.filter((s) => s !== removed),
            ),
            winner,
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  test('removing a server moves only its jobs, and adding one moves jobs only to it (200 jobs)', () => {
    fc.assert(
      fc.property(
        serversArb.filter((s) => s.length >= 2),
        fc.nat(),
        (servers, pick) => {
          const gone = servers[pick % servers.length]!;
          const rest = servers.filter((s) => s !== gone);
          const before = assignment(servers, JOB_IDS);
          const after = assignment(rest, JOB_IDS);
          for (const job of JOB_IDS) {
            if (before.get(job) === gone) assert.ok(rest.includes(after.get(job)!));
            else assert.equal(after.get(job), before.get(job), job);
          }
          // Seen the other way round: `gone` joining takes jobs only for itself.
          for (const job of JOB_IDS) {
            if (after.get(job) !== before.get(job)) assert.equal(before.get(job), gone);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  test('jobs spread over the servers', () => {
    const counts = new Map<string, number>();
    for (const job of assignment([A, B, C, D, E], JOB_IDS).values())
      counts.set(job!, (counts.get(job!) ?? 0) + 1);
    assert.equal(counts.size, 5);
    for (const [server, count] of counts) assert.ok(count >= 20, `${server} won only ${count} of 200`);
  });
});

describe('Placement', () => {
  test('owner placement: the owner runs it at once, always; nobody else ever', () => {
    const a = new Placement(A, T0, OPTIONS);
    const b = new Placement(B, T0, OPTIONS);
    const job = { id: 'j', owner: A };
    assert.equal(a.runsHere(job, T0), true);
    assert.equal(a.runsHere({ ...job, placement: 'owner' }, T0), true);
    assert.equal(b.runsHere(job, T0 + 1e9), false);
    assert.equal(a.runnerOf(job), A);
    assert.equal(b.runnerOf(job), A);
    // Without quorum too: owner jobs are not fenced.
    a.update([], 5, T0 + 1);
    assert.equal(a.hasQuorum(), false);
    assert.equal(a.runsHere(job, T0 + 1), true);
  });

  test("'any' runs only on the winner, after startupMs, once the view was stable for settleMs", () => {
    const job = { id: jobWonBy(A, [A, B]), owner: B, placement: 'any' as const };
    const a = new Placement(A, T0, OPTIONS);
    const b = new Placement(B, T0, OPTIONS);
    a.update([A, B], 2, T0 + 1000);
    b.update([A, B], 2, T0 + 1000);
    assert.equal(a.runnerOf(job), A);
    assert.equal(b.runnerOf(job), A);
    // Settled (1000 + 3000) before started up (10_000): startup decides.
    assert.equal(a.settlesAt(), T0 + 10_000);
    assert.equal(a.runsHere(job, T0 + 9999), false);
    assert.equal(a.runsHere(job, T0 + 10_000), true);
    assert.equal(b.runsHere(job, T0 + 10_000), false);
    // A view change late: settle decides.
    a.update([A], 2, T0 + 20_000);
    assert.equal(a.settlesAt(), T0 + 23_000);
    assert.equal(a.runsHere(job, T0 + 22_999), false);
    assert.equal(a.runsHere(job, T0 + 23_000), true);
    // The same view again is no change.
    a.update([A], 2, T0 + 24_000);
    assert.equal(a.runsHere(job, T0 + 24_000), true);
    assert.equal(a.settlesAt(), T0 + 23_000);
    // Self is always live, named or not; duplicates and order do not matter.
    a.update([B, B], 2, T0 + 30_000);
    assert.deepEqual(a.live, [A, B]);
    a.update([B, A], 2, T0 + 31_000);
    assert.equal(a.settlesAt(), T0 + 33_000);
  });

  test('a job a server loses stops at once', () => {
    const job = { id: jobWonBy(B, [A, B]), owner: A, placement: 'any' as const };
    assert.equal(rendezvousWinner(job.id, [A]), A);
    const a = new Placement(A, T0, OPTIONS);
    a.update([A], 3, T0);
    // Alone of three known: no quorum.
    assert.equal(a.runsHere(job, T0 + 20_000), false);
    a.update([A], 2, T0 + 20_000);
    assert.equal(a.runsHere(job, T0 + 20_000), true, 'stable since the start, alone of two');
    a.update([A, B], 2, T0 + 30_000);
    assert.equal(a.runsHere(job, T0 + 30_000), false, 'lost to B the moment B is seen');
    assert.equal(a.runnerOf(job), B);
  });

  test('quorum: with three or more known, a minority stands down; with two, each side runs what it wins', () => {
    const jobs = JOB_IDS.slice(0, 40).map((id) => ({ id, owner: C, placement: 'any' as const }));
    const late = T0 + 100_000;
    // Five known, split 3 | 2.
    const major = [A, B, C].map((id) => new Placement(id, T0, OPTIONS));
    const minor = [D, E].map((id) => new Placement(id, T0, OPTIONS));
    for (const p of major) p.update([A, B, C], 5, T0);
    for (const p of minor) p.update([D, E], 5, T0);
    for (const p of major) assert.equal(p.hasQuorum(), true);
    for (const p of minor) assert.equal(p.hasQuorum(), false);
    for (const job of jobs) {
      assert.equal(major.filter((p) => p.runsHere(job, late)).length, 1, job.id);
      for (const p of minor) {
        assert.equal(p.runsHere(job, late), false);
        assert.equal(p.runnerOf(job), undefined);
      }
    }
    // Four known, split 2 | 2: nobody has a majority, nobody runs.
    const halves = [A, B, C, D].map((id) => new Placement(id, T0, OPTIONS));
    halves[0]!.update([A, B], 4, T0);
    halves[1]!.update([A, B], 4, T0);
    halves[2]!.update([C, D], 4, T0);
    halves[3]!.update([C, D], 4, T0);
    for (const job of jobs) assert.equal(halves.filter((p) => p.runsHere(job, late)).length, 0);
    // Known is never less than live.
    const p = new Placement(A, T0, OPTIONS);
    p.update([A, B, C], 1, T0);
    assert.equal(p.hasQuorum(), true);
    p.update([A, B, C, D], 3, T0);
    assert.equal(p.hasQuorum(), true);
    // Two known, split: each side runs every job (each wins all among itself alone).
    const a = new Placement(A, T0, OPTIONS);
    const b = new Placement(B, T0, OPTIONS);
    a.update([A], 2, T0);
    b.update([B], 2, T0);
    for (const job of jobs) {
      assert.equal(a.runsHere(job, late), true);
      assert.equal(b.runsHere(job, late), true);
    }
  });

  test('prefer takes the job whenever it is live', () => {
    const id = jobWonBy(A, [A, B, C]);
    const job = { id, owner: A, placement: 'any' as const, prefer: C };
    const a = new Placement(A, T0, OPTIONS);
    const c = new Placement(C, T0, OPTIONS);
    a.update([A, B, C], 3, T0);
    c.update([A, B, C], 3, T0);
    assert.equal(a.runnerOf(job), C);
    assert.equal(a.runsHere(job, T0 + 50_000), false);
    assert.equal(c.runsHere(job, T0 + 50_000), true);
    // C gone: back to rendezvous among the rest.
    a.update([A, B], 3, T0 + 60_000);
    assert.equal(a.runnerOf(job), A);
    assert.equal(a.runsHere(job, T0 + 63_000), true);
    // C back: it takes the job back, and A stops at once.
    a.update([A, B, C], 3, T0 + 70_000);
    assert.equal(a.runsHere(job, T0 + 70_000), false);
    // A prefer that is not a server at all is ignored.
    assert.equal(a.runnerOf({ ...job, prefer: 'nobody' }), A);
  });

  test('settlesAt is the later of the startup and settle fences', () => {
    const p = new Placement(A, T0, OPTIONS);
    assert.equal(p.settlesAt(), T0 + OPTIONS.startupMs);
    p.update([A, B], 2, T0 + 9000);
    assert.equal(p.settlesAt(), T0 + 12_000);
    p.update([A, B], 2, T0 + 20_000);
    assert.equal(p.settlesAt(), T0 + 12_000);
    const zero = new Placement(A, T0, { settleMs: 0, startupMs: 0 });
    assert.equal(zero.settlesAt(), T0);
    assert.equal(zero.runsHere({ id: 'x', owner: B, placement: 'any' }, T0), true);
  });
});

describe('a simulated mesh whose views change together', () => {
  interface Step {
    /** Time since the previous step, ms. */
    dt: number;
    /** Per server: down (crashed, runs nothing), or the side of a partition it is on. */
    where: ('down' | 0 | 1 | 2)[];
  }

  const scenario = fc.integer({ min: 3, max: 5 }).chain((n) =>
    fc.record({
      servers: fc.constant([A, B, C, D, E].slice(0, n)),
      steps: fc.array(
        fc.record({
          dt: fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.constantFrom(1, 2999, 3000, 3001, 10_000)),
          where: fc.array(fc.oneof(fc.constantFrom<0 | 1 | 2>(0, 0, 0, 1, 2), fc.constant('down' as const)), {
            minLength: n,
            maxLength: n,
          }),
        }),
        { minLength: 1, maxLength: 25 },
      ),
      jobs: fc.array(
        fc.record({
          id: fc.uuid(),
          prefer: fc.option(fc.constantFrom(A, B, C, D, E, 'f0000000-0000-4000-8000-000000000000'), {
            nil: undefined,
          }),
        }),
        { minLength: 1, maxLength: 8 },
      ),
    }),
  );

  test('no job ever runs on two servers at once, and a stable majority runs every job once', () => {
    fc.assert(
      fc.property(scenario, ({ servers, steps, jobs }) => {
        const anyJobs = jobs.map((j) => ({
          id: j.id,
          owner: A,
          placement: 'any' as const,
          ...(j.prefer ? { prefer: j.prefer } : {}),
        }));
        const placements = new Map<string, Placement>();
        let t = T0;
        // Everyone starts together, all connected.
        const first: Step = { dt: 0, where: servers.map(() => 0) };
        const all = [first, ...steps];
        for (let s = 0; s < all.length; s++) {
          const step = all[s]!;
          t += step.dt;
          // Apply the view change to every server at the same instant.
          servers.forEach((id, i) => {
            const side = step.where[i]!;
            if (side === 'down') {
              placements.delete(id);
              return;
            }
            let p = placements.get(id);
            if (!p) {
              p = new Placement(id, t, OPTIONS);
              placements.set(id, p);
            }
            const live = servers.filter((_, k) => step.where[k] === side);
            p.update(live, servers.length, t);
          });
          // Look at many instants until the next change.
          const until = s + 1 < all.length ? t + all[s + 1]!.dt : t + 20_000;
          const instants = new Set([t, t + 1, t + 2999, t + 3000, t + 3001, t + 9999, t + 10_000, until - 1]);
          for (let k = 0; k < 6; k++) instants.add(t + Math.floor(((until - t) * k) / 6));
          for (const at of instants) {
            if (at < t || at >= until) continue;
            for (const job of anyJobs) {
              const runners = [...placements].filter(([, p]) => p.runsHere(job, at)).map(([id]) => id);
              assert.ok(runners.length <= 1, `${job.id} runs on ${runners.join(' and ')} at +${at - T0}`);
            }
          }
          // Liveness: a majority side, stable for settleMs with every member past startup, runs
          // every job once.
          const check = until - 1;
          for (const side of [0, 1, 2] as const) {
            const members = servers.filter((_, k) => step.where[k] === side);
            if (members.length * 2 <= servers.length) continue;
            const ready = members.every((id) => placements.get(id)!.settlesAt() <= check);
            if (!ready) continue;
            for (const job of anyJobs) {
              const runners = members.filter((id) => placements.get(id)!.runsHere(job, check));
              assert.equal(runners.length, 1, `${job.id} on side ${side} at +${check - T0}`);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('a simulated mesh whose views arrive up to settleMs apart', () => {
  /**
   * Servers crash and restart, and the mesh splits into sides and heals; each running server
   * learns of a change up to settleMs - 1 after it happens, and changes are further apart than
   * that. A restarted server sees only itself at first and its side after its own delay. The
   * settle and startup fences must keep a job from running on two servers while views disagree.
   */
  type Event = { at: number; server: string; action: 'start' | 'stop' | { live: string[] } };

  const scenario = fc.integer({ min: 3, max: 5 }).chain((n) =>
    fc.record({
      servers: fc.constant([A, B, C, D, E].slice(0, n)),
      steps: fc.array(
        fc.record({
          dt: fc.integer({ min: OPTIONS.settleMs, max: 15_000 }),
          where: fc.array(fc.oneof(fc.constantFrom<0 | 1>(0, 0, 1), fc.constant('down' as const)), {
            minLength: n,
            maxLength: n,
          }),
          delays: fc.array(
            fc.oneof(
              fc.integer({ min: 0, max: OPTIONS.settleMs - 1 }),
              fc.constantFrom(0, OPTIONS.settleMs - 1),
            ),
            { minLength: n, maxLength: n },
          ),
        }),
        { minLength: 1, maxLength: 15 },
      ),
      jobs: fc.array(
        fc.record({ id: fc.uuid(), prefer: fc.option(fc.constantFrom(A, B, C), { nil: undefined }) }),
        { minLength: 1, maxLength: 6 },
      ),
    }),
  );

  test('no job ever runs on two servers at once', () => {
    fc.assert(
      fc.property(scenario, ({ servers, steps, jobs }) => {
        const anyJobs = jobs.map((j) => ({
          id: j.id,
          owner: A,
          placement: 'any' as const,
          ...(j.prefer ? { prefer: j.prefer } : {}),
        }));
        const events: Event[] = [];
        for (const server of servers) {
          events.push({ at: T0, server, action: 'start' }, { at: T0, server, action: { live: servers } });
        }
        let t = T0;
        let up = servers.map(() => true);
        for (const step of steps) {
          t += step.dt;
          servers.forEach((server, i) => {
            const side = step.where[i]!;
            if (side === 'down') {
              if (up[i]) events.push({ at: t, server, action: 'stop' });
              return;
            }
            if (!up[i]) events.push({ at: t, server, action: 'start' });
            const live = servers.filter((_, k) => step.where[k] === side);
            events.push({ at: t + step.delays[i]!, server, action: { live } });
          });
          up = step.where.map((side) => side !== 'down');
        }
        events.sort((x, y) => x.at - y.at);

        const instants = new Set<number>();
        for (const e of events) {
          for (const d of [
            0,
            1,
            OPTIONS.settleMs - 1,
            OPTIONS.settleMs,
            OPTIONS.startupMs - 1,
            OPTIONS.startupMs,
          ]) {
            instants.add(e.at + d);
          }
        }
        const placements = new Map<string, Placement>();
        let next = 0;
        for (const at of [...instants].sort((x, y) => x - y)) {
          for (; next < events.length && events[next]!.at <= at; next++) {
            const e = events[next]!;
            if (e.action === 'start') {
              const p = new Placement(e.server, e.at, OPTIONS);
              p.update([], servers.length, e.at);
              placements.set(e.server, p);
            } else if (e.action === 'stop') {
              placements.delete(e.server);
            } else {
              placements.get(e.server)?.update(e.action.live, servers.length, e.at);
            }
          }
          for (const job of anyJobs) {
            const runners = [...placements].filter(([, p]) => p.runsHere(job, at)).map(([id]) => id);
            assert.ok(runners.length <= 1, `${job.id} runs on ${runners.join(' and ')} at +${at - T0}`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
