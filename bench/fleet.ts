/**
 * Fleets of real peers for the benchmarks: child processes of the built CLI
 * (`dist/shoal.js start --config FILE`, ready reported over IPC), handled through the
 * integration-test harness's PeerProcess, but with the product's DEFAULTS timings rather than the
 * shortened test ones. Only what keeps a fleet on this machine differs from DEFAULTS: bound to
 * 127.0.0.1 on a free port, beacons only to 127.255.255.255 on a random high beacon port of the
 * fleet's own, and log level warn. The warnings and errors the peers log are kept.
 *
 * Every fleet is remembered until it is stopped, so `stopEveryFleet()` (run on failure, on Ctrl-C
 * and at exit) leaves no process and no temporary directory behind.
 */

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NODE_FLAGS } from '../src/cli/runtime.ts';
import type { Config } from '../src/config.ts';
import { CLI, PeerProcess, readyMessage } from '../test/support/cluster.ts';
import { cpuMs } from './proc-stats.ts';

const READY_TIMEOUT_MS = 90_000;

/**
 * Extra Node options for every benchmark peer, for profiling a scenario, e.g.
 * `SHOAL_BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` (Node refuses these in
 * NODE_OPTIONS). With them, `stop()` lets peers exit by themselves, so Node writes the profiles.
 */
const EXTRA_FLAGS = (process.env.SHOAL_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);

/**
 * Settings to try instead of the defaults on every benchmark peer, as a JSON object, e.g.
 * `SHOAL_BENCH_SETTINGS='{"replicationBatchMs":5}'`: the peer checks them as any config file.
 */
const EXTRA_SETTINGS: Partial<Config> = JSON.parse(process.env.SHOAL_BENCH_SETTINGS ?? '{}');

/**
 * The settings in which a benchmark peer differs from DEFAULTS (besides name, data and secret).
 * Only these are written to its config file, so every other setting, timings included, is the
 * built product's own default, unless SHOAL_BENCH_SETTINGS says otherwise.
 */
export function benchSettings(beaconPort: number): Partial<Config> {
  return {
    ...EXTRA_SETTINGS,
    host: '127.0.0.1',
    port: 0,
    beaconTargets: ['127.255.255.255'],
    beaconPort,
    logLevel: 'warn',
  };
}

/** A peer of a fleet, with the wall-clock times (ms since the epoch) of its spawn and ready. */
export interface FleetPeer {
  process: PeerProcess;
  spawnedAt: number;
  readyAt: number;
  /** CPU time (user + system, ms) the process had used when its ready message arrived. */
  startCpuMs: number;
}

const live = new Set<Fleet>();

/** A beacon port for a fleet or a part of one, among the high ports. */
export function randomBeaconPort(): number {
  return 30_000 + Math.floor(Math.random() * 30_000);
}

export class Fleet {
  readonly root = mkdtempSync(join(tmpdir(), 'shoal-bench-'));
  readonly secret = randomBytes(32).toString('base64url');
  readonly beaconPort = randomBeaconPort();
  readonly peers: FleetPeer[] = [];
  /** Every process ever started, running or not. */
  readonly #processes: PeerProcess[] = [];
  /** Log lines at warn or above from any peer (pino JSON), and lines on stderr. */
  readonly warnings: string[] = [];
  #count = 0;

  constructor() {
    live.add(this);
  }

  /**
   * Starts one peer and resolves when it reports ready over IPC. `config` adds settings of its
   * own (topology: a beacon port, static peers, a fixed HTTP port for a restart).
   */
  async start(
    options: { name?: string; dataDir?: string; config?: Partial<Config> } = {},
  ): Promise<FleetPeer> {
    const name = options.name ?? `peer-${++this.#count}`;
    const dataDir = options.dataDir ?? join(this.root, name);
    mkdirSync(dataDir, { recursive: true });
    const keyFile = join(dataDir, 'admin.key');
    if (!existsSync(keyFile)) {
      writeFileSync(keyFile, `bench_${randomBytes(12).toString('hex')}\n`, { mode: 0o600 });
    }
    const configFile = join(this.root, `${name}-${randomBytes(3).toString('hex')}.json`);
    const config = {
      ...benchSettings(this.beaconPort),
      name,
      dataDir,
      secret: this.secret,
      ...options.config,
    };
    writeFileSync(configFile, JSON.stringify(config));

    const spawnedAt = Date.now();
    // As the `shoal` command starts a peer (its #! line carries these Node flags).
    const child = spawn(
      process.execPath,
      [...NODE_FLAGS, ...EXTRA_FLAGS, CLI, 'start', '--config', configFile],
      {
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      },
    );
    const peer = new PeerProcess(name, dataDir, child);
    this.#processes.push(peer);
    this.#keepWarnings(peer);
    const ready = await readyMessage(child, name, READY_TIMEOUT_MS, () => peer.stderr);
    const readyAt = Date.now();
    const startCpuMs = child.pid === undefined ? Number.NaN : cpuMs(child.pid);
    peer.id = ready.id;
    peer.port = ready.port;
    peer.url = ready.url;
    const started = { process: peer, spawnedAt, readyAt, startCpuMs };
    this.peers.push(started);
    return started;
  }

  /** Starts `n` peers at once, as `shoal demo` does. */
  startMany(n: number): Promise<FleetPeer[]> {
    return Promise.all(Array.from({ length: n }, () => this.start()));
  }

  /** Starts a stopped peer again on its data directory (same id, next generation). */
  async restart(peer: FleetPeer, config?: Partial<Config>): Promise<FleetPeer> {
    const again = await this.start({
      name: peer.process.name,
      dataDir: peer.process.dataDir,
      ...(config ? { config } : {}),
    });
    const index = this.peers.indexOf(peer);
    if (index >= 0) this.peers.splice(index, 1);
    return again;
  }

  /** The peers whose process still runs. */
  get running(): FleetPeer[] {
    return this.peers.filter((p) => p.process.alive);
  }

  /** Kills every process (SIGKILL also ends a SIGSTOPped one) and deletes the fleet's files. */
  async stop(): Promise<void> {
    live.delete(this);
    if (EXTRA_FLAGS.length > 0) await this.#stopGently();
    await Promise.all(this.#processes.map((p) => p.kill()));
    rmSync(this.root, { recursive: true, force: true });
  }

  /**
   * With extra Node options (a profile, a heap snapshot), peers first get SIGTERM and up to 10 s
   * to exit by themselves, so that Node writes what it was asked to; the rest are then killed.
   */
  async #stopGently(): Promise<void> {
    const running = this.#processes.filter((p) => p.alive);
    for (const p of running) p.child.kill('SIGTERM');
    const timeout = new AbortController();
    const waited = sleep(10_000, undefined, { signal: timeout.signal }).catch(() => {});
    await Promise.race([Promise.all(running.map((p) => p.exited)), waited]);
    timeout.abort();
  }

  /** The same, synchronously, for process 'exit' where nothing can be awaited. */
  stopNow(): void {
    live.delete(this);
    for (const peer of this.#processes) {
      if (!peer.alive || peer.child.pid === undefined) continue;
      try {
        process.kill(peer.child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(this.root, { recursive: true, force: true });
  }

  #keepWarnings(peer: PeerProcess): void {
    let partial = '';
    peer.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        try {
          if ((JSON.parse(line) as { level?: number }).level! >= 40)
            this.warnings.push(`${peer.name}: ${line}`);
        } catch {
          if (line.trim()) this.warnings.push(`${peer.name} (stdout): ${line}`);
        }
      }
    });
    peer.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n'))
        if (line.trim()) this.warnings.push(`${peer.name} (stderr): ${line}`);
    });
  }
}

/** Stops every fleet not stopped yet. */
export async function stopEveryFleet(): Promise<void> {
  await Promise.all([...live].map((fleet) => fleet.stop()));
}

/** Stops every fleet at once, synchronously (for process 'exit' and signals). */
export function stopEveryFleetNow(): void {
  for (const fleet of [...live]) fleet.stopNow();
}
