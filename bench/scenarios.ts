/**
 * The benchmark scenarios. Each starts its own fleet (fresh processes, a fresh beacon port),
 * measures, and stops the fleet whatever happens. Times come from the observers' own state-change
 * stamps (PeerView.since, see mesh-watch.ts), taken against the bench's wall clock when it sent a
 * signal or received a ready message.
 */

import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULTS } from '../src/config.ts';
import { Fleet, type FleetPeer } from './fleet.ts';
import { type Floor, startFloor } from './floor.ts';
import { MeshWatch } from './mesh-watch.ts';
import { cpuMs, cpuResolutionMs, memory } from './proc-stats.ts';
import type { Metric, Target } from './summary.ts';

export interface Diagnostics {
  /** Counters summed over the peers of a scenario, by metric name and labels. */
  counters: Record<string, number>;
  /** Free-form facts worth keeping with the results. */
  notes: string[];
  /** What the peers logged at warn or above, or wrote to stderr. */
  warnings: string[];
}

export interface ScenarioContext {
  metric(key: string, label: string, unit: Metric['unit'], target?: Target, note?: string): Metric;
  diagnostics(scenario: string): Diagnostics;
  log(line: string): void;
}

/** How long a mesh may take to form before the run counts as failed. */
const MESH_TIMEOUT_MS = 30_000;
/** How much longer, once connected, every link may take to become direct. */
const DIRECT_TIMEOUT_MS = 15_000;

/** Runs `measure` and files its result under `metric`; a failure is filed, not thrown. */
async function sample(ctx: ScenarioContext, metric: Metric, measure: () => Promise<number>): Promise<void> {
  try {
    metric.samples.push(await measure());
  } catch (err) {
    metric.failures.push((err as Error).message);
    ctx.log(`  ${metric.key}: FAILED ${(err as Error).message}`);
  }
}

function ids(peers: FleetPeer[]): string[] {
  return peers.map((p) => p.process.id);
}

/** Waits until every running peer sees every other connected (and linked directly, if asked). */
function fullMesh(watch: MeshWatch, peers: FleetPeer[], direct = false) {
  const all = ids(peers);
  return watch.until(
    `a full mesh of ${all.length}${direct ? ' (direct links)' : ''}`,
    () => watch.allSee(all, 'connected', { direct }),
    direct ? DIRECT_TIMEOUT_MS : MESH_TIMEOUT_MS,
  );
}

/** Counters of interest from the peers' /metrics, summed over the peers (and over link peers). */
async function scrapeCounters(peers: FleetPeer[]): Promise<Record<string, number>> {
  const texts = await Promise.all(peers.map((p) => p.process.metrics().catch(() => '')));
  const counter =
    /^(shoal_(?:beacons_rejected_total|handshakes_rejected_total|links_opened_total|links_closed_total))(\{[^}]*\})? (\S+)$/;
  // Link traffic is counted per linked peer; summed here over them, received side only.
  const traffic = /^(shoal_link_(?:frames|bytes)_total)\{.*direction="rx".*\} (\S+)$/;
  const sums: Record<string, number> = {};
  const add = (key: string, value: string): void => {
    sums[key] = (sums[key] ?? 0) + Number(value);
  };
  for (const text of texts) {
    for (const row of text.split('\n')) {
      const c = counter.exec(row);
      if (c) add(`${c[1]}${c[2] ?? ''}`, c[3]!);
      const t = traffic.exec(row);
      if (t) add(`${t[1]}{direction="rx"}`, t[2]!);
    }
  }
  return sums;
}

function addCounters(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, value] of Object.entries(from)) into[key] = (into[key] ?? 0) + value;
}

/**
 * Formation: `n` peers started at once (as `shoal demo` does); the time from the last one's IPC
 * ready to every peer seeing every other connected, and to every link being direct. Also what the
 * start costs each process, and the link traffic each peer received until the mesh was whole.
 */
export async function formation(ctx: ScenarioContext, n: number, runs: number): Promise<void> {
  const tenTarget: Target = { stat: 'max', limit: 1000, text: '≤ 1000 ms every run' };
  const mesh = ctx.metric(
    `mesh.${n}.connected`,
    `full mesh of ${n}: last ready → all connected`,
    'ms',
    n === 10 ? tenTarget : undefined,
  );
  const direct = ctx.metric(`mesh.${n}.direct`, `full mesh of ${n}: last ready → all links direct`, 'ms');
  const total = ctx.metric(`mesh.${n}.total`, `full mesh of ${n}: first spawn → all connected`, 'ms');
  const startup = ctx.metric(`start.${n}.wall`, `process start (spawn → ready), ${n} at once`, 'ms');
  const startCpu = ctx.metric(`start.${n}.cpu`, `process start CPU (user+sys at ready), ${n} at once`, 'ms');
  const frames = ctx.metric(
    `mesh.${n}.frames`,
    `link frames received per peer until all direct, ${n}`,
    'frames',
    undefined,
    'heartbeats, membership records, replication; a full mesh needs each peer to link to n-1 others',
  );
  const kbytes = ctx.metric(`mesh.${n}.kbytes`, `link kB received per peer until all direct, ${n}`, 'kB');
  const busy = ctx.metric(
    `mesh.${n}.cpu`,
    `CPU per peer from the last ready to all direct, ${n}`,
    'ms',
    undefined,
    `with ${cpus().length} cores, ${n} peers can spend at most ${cpus().length}/${n} of a core each`,
  );
  const lag = ctx.metric(`watch.lag.${n}`, `event-stream lag (change → bench saw it), ${n}`, 'ms');
  const diag = ctx.diagnostics(`formation.${n}`);

  for (let run = 1; run <= runs; run++) {
    const fleet = new Fleet();
    const watch = new MeshWatch();
    const before = { mesh: mesh.samples.length, direct: direct.samples.length };
    try {
      const peers = await fleet.startMany(n);
      for (const p of peers) {
        startup.samples.push(p.readyAt - p.spawnedAt);
        startCpu.samples.push(p.startCpuMs);
      }
      const pids = peers.map((p) => p.process.child.pid!);
      const cpuAtReady = pids.map(cpuMs);
      const lastReady = Math.max(...peers.map((p) => p.readyAt));
      const firstSpawn = Math.min(...peers.map((p) => p.spawnedAt));
      await watch.add(peers);
      let connectedAt: number | undefined;
      await sample(ctx, mesh, async () => {
        const reached = await fullMesh(watch, peers);
        connectedAt = reached.at;
        lag.samples.push(reached.seenAt - reached.at);
        return reached.at - lastReady;
      });
      if (connectedAt !== undefined) total.samples.push(connectedAt - firstSpawn);
      if (connectedAt !== undefined) {
        await sample(ctx, direct, async () => (await fullMesh(watch, peers, true)).at - lastReady);
      }
      const spent = pids.map((pid, i) => cpuMs(pid) - cpuAtReady[i]!);
      busy.samples.push(spent.reduce((sum, ms) => sum + ms, 0) / n);
      const counters = await scrapeCounters(peers);
      frames.samples.push((counters['shoal_link_frames_total{direction="rx"}'] ?? 0) / n);
      kbytes.samples.push((counters['shoal_link_bytes_total{direction="rx"}'] ?? 0) / n / 1024);
      addCounters(diag.counters, counters);
      const starts = peers.map((p) => p.readyAt - p.spawnedAt);
      ctx.log(
        `  ${n} peers, run ${run}/${runs}: connected ${fmtRun(mesh, before.mesh)}, ` +
          `direct ${fmtRun(direct, before.direct)} after the last ready; ` +
          `starts took ${Math.min(...starts)}–${Math.max(...starts)} ms`,
      );
    } finally {
      watch.close();
      await fleet.stop();
      diag.warnings.push(...fleet.warnings);
    }
  }
}

/** The sample a run added (the metric had `before` samples until then), or FAILED. */
function fmtRun(metric: Metric, before: number): string {
  const added = metric.samples[before];
  return added === undefined ? 'FAILED' : `${Math.round(added)} ms`;
}

/**
 * Failure detection in a mesh of `n`: kill -9 (no goodbye), graceful leave (SIGINT, bye on every
 * link) and a silent peer (SIGSTOP: sockets stay open, nothing is sent, so only the heartbeat
 * timeout can tell), each `reps` times. A killed or departed peer is restarted on its data
 * directory (same id, next generation) before the next round, which also times a rejoin.
 */
export async function failures(ctx: ScenarioContext, n: number, reps: number): Promise<void> {
  const kill = ctx.metric('detect.kill9', 'kill -9 → all others see it disconnected', 'ms', {
    stat: 'max',
    limit: 2000,
    text: '≤ 2000 ms every run',
  });
  const leave = ctx.metric('detect.leave', 'graceful leave (SIGINT) → all see it disconnected', 'ms', {
    stat: 'max',
    limit: 100,
    text: '≤ 100 ms every run',
  });
  const silent = ctx.metric(
    'detect.silent',
    'SIGSTOP (silent peer) → all see it disconnected',
    'ms',
    undefined,
    `failureTimeoutMs ${DEFAULTS.failureTimeoutMs}, heartbeatIntervalMs ${DEFAULTS.heartbeatIntervalMs}`,
  );
  const heal = ctx.metric('heal.sigcont', 'SIGCONT → connected again both ways', 'ms');
  const rejoin = ctx.metric('rejoin', `restart (same data) ready → full mesh of ${n} again`, 'ms');
  const diag = ctx.diagnostics(`failures.${n}`);

  const fleet = new Fleet();
  const watch = new MeshWatch();
  let turn = 0;
  /** A different peer each round. */
  const nextVictim = (): FleetPeer => fleet.running[turn++ % fleet.running.length]!;

  /** Brings a stopped victim back and waits for the full mesh; times the rejoin. */
  const restart = async (victim: FleetPeer): Promise<void> => {
    const again = await fleet.restart(victim);
    await watch.add([again]);
    await sample(ctx, rejoin, async () => (await fullMesh(watch, fleet.running)).at - again.readyAt);
    await fullMesh(watch, fleet.running, true);
  };

  /** Waits until every other running peer sees `victim` disconnected since `t0`. */
  const seenGone = async (victim: FleetPeer, t0: number): Promise<number> => {
    const others = ids(fleet.running.filter((p) => p !== victim));
    const reached = await watch.until(
      `every other peer to see ${victim.process.name} disconnected`,
      () => watch.allSee([victim.process.id], 'disconnected', { observers: others, notBefore: t0 }),
      MESH_TIMEOUT_MS,
    );
    return reached.at - t0;
  };

  try {
    const peers = await fleet.startMany(n);
    await watch.add(peers);
    await fullMesh(watch, peers, true);

    for (let rep = 1; rep <= reps; rep++) {
      const victim = nextVictim();
      watch.remove(victim.process.id);
      const t0 = Date.now();
      victim.process.child.kill('SIGKILL');
      await sample(ctx, kill, () => seenGone(victim, t0));
      await victim.process.exited;
      await restart(victim);
    }
    ctx.log(
      `  kill -9: ${kill.samples.join(', ')} ms; rejoin after restart: ${rejoin.samples.join(', ')} ms`,
    );

    for (let rep = 1; rep <= reps; rep++) {
      const victim = nextVictim();
      watch.remove(victim.process.id);
      const t0 = Date.now();
      victim.process.child.kill('SIGINT');
      await sample(ctx, leave, () => seenGone(victim, t0));
      await victim.process.exited;
      await restart(victim);
    }
    ctx.log(`  graceful leave: ${leave.samples.join(', ')} ms`);

    for (let rep = 1; rep <= reps; rep++) {
      const victim = nextVictim();
      const others = fleet.running.filter((p) => p !== victim);
      const t0 = Date.now();
      victim.process.child.kill('SIGSTOP');
      try {
        await sample(ctx, silent, () => seenGone(victim, t0));
      } finally {
        victim.process.child.kill('SIGCONT');
      }
      const t1 = Date.now();
      await sample(ctx, heal, async () => {
        const id = victim.process.id;
        const reached = await watch.until(
          `${victim.process.name} and the others to see each other connected after SIGCONT`,
          () => {
            const theySee = watch.allSee([id], 'connected', { observers: ids(others), notBefore: t1 });
            const itSees = watch.allSee(ids(others), 'connected', { observers: [id], notBefore: t1 });
            return theySee === undefined || itSees === undefined ? undefined : Math.max(theySee, itSees);
          },
          MESH_TIMEOUT_MS,
        );
        return reached.at - t1;
      });
      await fullMesh(watch, fleet.running, true);
    }
    ctx.log(`  silent peer: detected ${silent.samples.join(', ')} ms; healed ${heal.samples.join(', ')} ms`);
    addCounters(diag.counters, await scrapeCounters(fleet.running));
  } finally {
    watch.close();
    await fleet.stop();
    diag.warnings.push(...fleet.warnings);
  }
}

/**
 * Memory and CPU of idle peers in a settled mesh of `n`, and of one lone peer (no links) measured
 * in the same window, which splits the cost into a fixed part and a part per link. In the same
 * window, the memory of an empty Node process and of shoal's dependencies alone (floor.ts): what
 * no peer on this Node and this stack can go under.
 */
export async function idle(
  ctx: ScenarioContext,
  n: number,
  settleMs: number,
  windowMs: number,
): Promise<void> {
  const resolution = `${((cpuResolutionMs() / windowMs) * 100).toFixed(2)} %`;
  const rss = ctx.metric('idle.rss', `idle peer RSS (mesh of ${n})`, 'MB', {
    stat: 'max',
    limit: 60,
    text: '< 60 MB every peer',
  });
  const anon = ctx.metric(
    'idle.rss_anon',
    `idle peer private memory, RssAnon (mesh of ${n})`,
    'MB',
    undefined,
    'RSS less the file-backed pages (node binary, libraries) that every peer shares',
  );
  const pss = ctx.metric('idle.pss', `idle peer PSS, shared pages split (mesh of ${n})`, 'MB');
  const cpu = ctx.metric(
    'idle.cpu',
    `idle peer CPU, % of one core (mesh of ${n})`,
    '%',
    { stat: 'max', limit: 0.5, text: '< 0.5 % every peer' },
    `over ${windowMs / 1000} s after ${settleMs / 1000} s settling; resolution ${resolution}`,
  );
  const loneRss = ctx.metric('idle.lone.rss', 'lone peer (no links) RSS', 'MB');
  const loneCpu = ctx.metric('idle.lone.cpu', 'lone peer (no links) CPU, % of one core', '%');
  const emptyRss = ctx.metric(
    'idle.floor.node',
    'floor: an empty Node process, RSS',
    'MB',
    undefined,
    "node -e 'setInterval(...)' with the peers' Node flags",
  );
  const stackRss = ctx.metric(
    'idle.floor.stack',
    "floor: shoal's dependencies alone at rest, RSS",
    'MB',
    undefined,
    'bench/stack-floor.ts, bundled as the product: fastify, ws, SQLite, pino, prom-client, ... and no shoal code',
  );
  const stackAnon = ctx.metric('idle.floor.stack_anon', "floor: shoal's dependencies alone, RssAnon", 'MB');
  const diag = ctx.diagnostics(`idle.${n}`);
  const fleet = new Fleet();
  const loneFleet = new Fleet();
  const watch = new MeshWatch();
  let floor: Floor | undefined;
  try {
    floor = await startFloor();
    const [peers, lone] = await Promise.all([fleet.startMany(n), loneFleet.start()]);
    await watch.add(peers);
    await fullMesh(watch, peers, true);
    // The event streams are the bench's, not the product's: close them before measuring.
    watch.close();
    await sleep(settleMs);
    const all = [...peers, lone];
    const pids = all.map((p) => p.process.child.pid!);
    const before = pids.map(cpuMs);
    const t0 = performance.now();
    await sleep(windowMs);
    const after = pids.map(cpuMs);
    const elapsed = performance.now() - t0;
    const mb = 1024 * 1024;
    for (const [i, pid] of pids.entries()) {
      const share = ((after[i]! - before[i]!) / elapsed) * 100;
      const mem = memory(pid);
      if (all[i] === lone) {
        loneCpu.samples.push(share);
        loneRss.samples.push(mem.rss / mb);
        continue;
      }
      cpu.samples.push(share);
      rss.samples.push(mem.rss / mb);
      anon.samples.push(mem.anon / mb);
      pss.samples.push(mem.pss / mb);
    }
    emptyRss.samples.push(memory(floor.empty.pid!).rss / mb);
    const stack = memory(floor.stack.pid!);
    stackRss.samples.push(stack.rss / mb);
    stackAnon.samples.push(stack.anon / mb);
    addCounters(diag.counters, await scrapeCounters(peers));
    const opened = diag.counters['shoal_links_opened_total{direction="outbound"}'] ?? 0;
    diag.notes.push(`${opened} links opened for the ${(n * (n - 1)) / 2} pairs`);
  } finally {
    watch.close();
    floor?.stop();
    await Promise.all([fleet.stop(), loneFleet.stop()]);
    diag.warnings.push(...fleet.warnings, ...loneFleet.warnings);
  }
}
