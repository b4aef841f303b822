/**
 * `npm run bench [-- --quick] [-- --only SUITES]`: with the product's DEFAULTS timings, on
 * loopback only (127.0.0.1, beacons to 127.255.255.255 on a random high beacon port):
 * - mesh: how fast a mesh of real peers forms, notices failures and heals, and what an idle peer
 *   costs (scenarios.ts);
 * - replication: write → on all replicas latency, sustained write rate, convergence after a
 *   partition, memory with 100,000 nodes (replication.ts);
 * - mosquitto: the same fan-out through a Mosquitto broker, and the ratios shoal/Mosquitto
 *   (mosquitto.ts);
 * - automation: trigger latency across servers, failover of placed work, executor runs per second
 *   (automation.ts).
 * SUITES is a comma list of those names (default: all). Prints tables with the targets and one
 * `BENCH key: …` line per metric or figure, and writes everything to
 * bench/results/bench-TIME.json. Every child process and temporary directory is removed, also on
 * failure and on Ctrl-C. Exit status 1 when a scenario could not be measured (a timeout, a
 * crash); a missed target is reported as FAIL in the table but is a result, not an error.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '../src/config.ts';
import { VERSION } from '../src/version.ts';
import { type AutomationPlan, automationSuite } from './automation.ts';
import { benchSettings, stopEveryFleet, stopEveryFleetNow } from './fleet.ts';
import { stopEveryFloorNow } from './floor.ts';
import { compare, type MosquittoFindings, mosquittoSuite, stopEveryMosquittoNow } from './mosquitto.ts';
import {
  type Figure,
  figureLine,
  figureTable,
  type ReplicationFindings,
  type ReplicationPlan,
  replicationSuite,
  type SuiteContext,
} from './replication.ts';
import { type Diagnostics, failures, formation, idle, type ScenarioContext } from './scenarios.ts';
import { finalLine, type Metric, stats, table, verdict } from './summary.ts';

const SUITES = ['mesh', 'replication', 'mosquitto', 'automation'] as const;
type Suite = (typeof SUITES)[number];

interface Plan {
  formation: [peers: number, runs: number][];
  failureMesh: number;
  failureReps: number;
  idlePeers: number;
  /** Idle measurement: how long a formed mesh settles (startup compilation and garbage done) first. */
  settleMs: number;
  windowMs: number;
  replication: ReplicationPlan;
  automation: AutomationPlan;
}

const RAMP = [
  500, 1000, 1500, 2000, 3000, 4000, 5000, 6500, 8000, 10_000, 13_000, 16_000, 20_000, 25_000, 32_000, 40_000,
];

const FULL: Plan = {
  formation: [
    [3, 5],
    [10, 5],
    [25, 3],
  ],
  failureMesh: 5,
  failureReps: 5,
  idlePeers: 10,
  settleMs: 15_000,
  windowMs: 30_000,
  replication: {
    sizes: [3, 10],
    rates: [
      [100, 10_000],
      [1000, 5000],
      [5000, 4000],
    ],
    rampRates: RAMP,
    rampStepMs: 5000,
    partitionSide: 3,
    partitionWrites: 10_000,
    bulkNodes: 100_000,
    bulkSettleMs: 10_000,
  },
  automation: { crossings: 200, failovers: 3, calculations: 200, runsWindowMs: 10_000 },
};

const QUICK: Plan = {
  formation: [
    [3, 2],
    [10, 2],
    [25, 1],
  ],
  failureMesh: 5,
  failureReps: 2,
  idlePeers: 10,
  settleMs: 3000,
  windowMs: 5000,
  replication: {
    sizes: [3, 10],
    rates: [
      [100, 5000],
      [1000, 3000],
      [5000, 3000],
    ],
    rampRates: RAMP,
    rampStepMs: 3000,
    partitionSide: 3,
    partitionWrites: 10_000,
    bulkNodes: 20_000,
    bulkSettleMs: 3000,
  },
  automation: { crossings: 50, failovers: 1, calculations: 200, runsWindowMs: 5000 },
};

/** The suites named by `--only a,b` (default all), or an error message. */
function parseArgs(argv: string[]): { quick: boolean; suites: Suite[] } | string {
  let quick = false;
  let suites: Suite[] = [...SUITES];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') quick = true;
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const list = arg === '--only' ? argv[++i] : arg.slice('--only='.length);
      const names = (list ?? '').split(',').filter(Boolean);
      const wrong = names.find((n) => !(SUITES as readonly string[]).includes(n));
      if (names.length === 0 || wrong !== undefined)
        return `--only: "${wrong ?? ''}" is not a suite (${SUITES.join(', ')})`;
      suites = names as Suite[];
    } else return `unknown argument ${arg} (--quick, --only ${SUITES.join(',')})`;
  }
  return { quick, suites };
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (typeof args === 'string') {
    process.stderr.write(`bench: ${args}\n`);
    return 2;
  }
  const { quick, suites } = args;
  const plan = quick ? QUICK : FULL;
  const startedAt = new Date();
  const metrics: Metric[] = [];
  const diagnostics: Record<string, Diagnostics> = {};
  const errors: string[] = [];
  /** The bench's own CPU share per scenario: the observer must not crowd out the observed. */
  const benchCpu: string[] = [];
  const log = (line: string): void => void process.stdout.write(`${line}\n`);
  const figures: Figure[] = [];
  const details: Record<string, unknown> = {};
  const suiteCtx: SuiteContext = {
    log,
    figure(figure) {
      figures.push(figure);
      return figure;
    },
    detail(key, value) {
      details[key] = value;
    },
    warnings(scenario, lines) {
      ctx.diagnostics(scenario).warnings.push(...lines);
    },
  };
  const ctx: ScenarioContext = {
    metric(key, label, unit, target, note) {
      const metric: Metric = { key, label, unit, samples: [], failures: [] };
      if (target) metric.target = target;
      if (note) metric.note = note;
      metrics.push(metric);
      return metric;
    },
    diagnostics(scenario) {
      diagnostics[scenario] ??= { counters: {}, notes: [], warnings: [] };
      return diagnostics[scenario];
    },
    log,
  };

  const d = DEFAULTS;
  const load = loadavg()[0] ?? 0;
  log(
    `shoal ${VERSION} bench${quick ? ' (--quick)' : ''} (${suites.join(', ')}): node ${process.version}, ${cpus().length} cores, load average ${load.toFixed(2)}`,
  );
  if (load > cpus().length) {
    log('WARNING: the machine is already busy; start-up, formation and CPU figures will be inflated');
  }
  log(
    `timings: DEFAULTS (beaconIntervalMs ${d.beaconIntervalMs} ±${d.beaconJitter * 100}%, heartbeatIntervalMs ${d.heartbeatIntervalMs}, ` +
      `failureTimeoutMs ${d.failureTimeoutMs}, dialGraceMs ${d.dialGraceMs}, reconnectBaseMs ${d.reconnectBaseMs}); ` +
      `only host 127.0.0.1, port 0, beacons to 127.255.255.255 on a random high port, log level warn differ`,
  );

  let shoalFindings: ReplicationFindings | undefined;
  let mqttFindings: MosquittoFindings | undefined;
  type Scenario = [name: string, run: () => Promise<void>];
  const bySuite: Record<Suite, Scenario[]> = {
    mesh: [
      ...plan.formation.map(
        ([n, runs]): Scenario => [`formation of ${n} (${runs} runs)`, () => formation(ctx, n, runs)],
      ),
      [
        `failure detection in a mesh of ${plan.failureMesh} (${plan.failureReps} rounds each)`,
        () => failures(ctx, plan.failureMesh, plan.failureReps),
      ],
      [
        `idle cost in a mesh of ${plan.idlePeers}`,
        () => idle(ctx, plan.idlePeers, plan.settleMs, plan.windowMs),
      ],
    ],
    replication: [
      [
        'replication (issue 3)',
        async () => {
          shoalFindings = await replicationSuite(suiteCtx, plan.replication);
        },
      ],
    ],
    mosquitto: [
      [
        'Mosquitto side by side',
        async () => {
          // The same fan-out runs as the replication suite, so that the two compare.
          mqttFindings = await mosquittoSuite(suiteCtx, plan.replication);
          if (shoalFindings) compare(suiteCtx, plan.replication, shoalFindings, mqttFindings);
        },
      ],
    ],
    automation: [['automation (issue 5)', () => automationSuite(suiteCtx, plan.automation)]],
  };
  // In SUITES order, whatever the order of --only: Mosquitto compares with replication's findings.
  const scenarios = SUITES.filter((suite) => suites.includes(suite)).flatMap((suite) => bySuite[suite]);
  for (const [name, run] of scenarios) {
    log(`\n== ${name} (load average ${(loadavg()[0] ?? 0).toFixed(2)})`);
    const t0 = Date.now();
    const cpu0 = process.cpuUsage();
    try {
      await run();
    } catch (err) {
      errors.push(`${name}: ${(err as Error).stack ?? String(err)}`);
      log(`  FAILED: ${(err as Error).message}`);
    }
    const { user, system } = process.cpuUsage(cpu0);
    const seconds = (Date.now() - t0) / 1000;
    benchCpu.push(`${name}: ${((user + system) / 1000 / seconds / 10).toFixed(1)} % of a core`);
    log(`  (${seconds.toFixed(1)} s; the bench itself used ${((user + system) / 1e6).toFixed(1)} s of CPU)`);
  }
  await stopEveryFleet();
  stopEveryMosquittoNow();
  stopEveryFloorNow();

  if (metrics.length) log(`\n${table(metrics)}`);
  if (figures.length) log(`\n${figureTable(figures)}`);
  const figureNotes = figures.filter((f) => f.note).map((f) => `  ${f.key}: ${f.note}`);
  const notes = metrics.filter((m) => m.note).map((m) => `  ${m.key}: ${m.note}`);
  if (notes.length || figureNotes.length) log(`\nnotes:\n${[...notes, ...figureNotes].join('\n')}`);
  log('\ndiagnostics (counters summed over the peers of each scenario):');
  for (const [scenario, diag] of Object.entries(diagnostics)) {
    const counters = Object.entries(diag.counters)
      .filter(
        ([key, value]) => value > 0 && !key.startsWith('shoal_beacons_sent') && !key.includes('received'),
      )
      .map(([key, value]) => `${key.replace(/^shoal_/, '')}=${value}`);
    log(`  ${scenario}: ${[...counters, ...diag.notes].join(', ') || '-'}`);
    for (const [line, count] of tally(diag.warnings)) log(`    ${count}× ${line}`);
  }
  if (errors.length) log(`\nerrors:\n${errors.join('\n')}`);

  const loadAfter = loadavg()[0] ?? 0;
  const file = writeResults({
    startedAt,
    quick,
    suites,
    plan,
    metrics,
    figures,
    details,
    diagnostics,
    benchCpu,
    loadAverage: { before: load, after: loadAfter },
    errors,
  });
  log(`\nthe bench's own CPU: ${benchCpu.join('; ')}`);
  log(`results: ${file}`);
  log(
    `took ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s; load average ${load.toFixed(2)} before, ${loadAfter.toFixed(2)} after`,
  );
  for (const metric of metrics) log(finalLine(metric));
  for (const figure of figures) log(figureLine(figure));
  const broken = metrics.some((m) => m.failures.length > 0);
  return errors.length > 0 || broken ? 1 : 0;
}

/**
 * What the peers logged at warn or above or wrote to stderr, with like lines counted together:
 * pino lines by level and message, others with process ids and numbers masked. The banner every
 * peer prints on stderr at start is left out.
 */
function tally(lines: string[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const raw of lines) {
    const text = raw.replace(/^[\w-]+(?: \((?:stderr|stdout)\))?: /, '');
    if (/^shoal: .* is up at |^\(Use `node --trace-warnings/.test(text)) continue;
    let key: string;
    try {
      const entry = JSON.parse(text) as { level: number; msg: string };
      key = `log level ${entry.level}: ${entry.msg}`;
    } catch {
      key = text.replace(/\(node:\d+\)/g, '(node)').replace(/\d{5,}/g, 'N');
    }
    counts.set(key.slice(0, 200), (counts.get(key.slice(0, 200)) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]);
}

interface Results {
  startedAt: Date;
  quick: boolean;
  suites: Suite[];
  plan: Plan;
  metrics: Metric[];
  figures: Figure[];
  details: Record<string, unknown>;
  diagnostics: Record<string, Diagnostics>;
  benchCpu: string[];
  loadAverage: { before: number; after: number };
  errors: string[];
}

function writeResults(results: Results): string {
  const { startedAt, metrics, ...rest } = results;
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const file = `${dir}bench-${stamp}.json`;
  const { beaconPort: _random, ...settings } = benchSettings(0);
  const { name: _name, dataDir: _data, secret: _secret, ...defaults } = DEFAULTS;
  const body = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    version: VERSION,
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    settings,
    defaults,
    ...rest,
    metrics: metrics.map((m) => ({ ...m, stats: stats(m.samples), verdict: verdict(m) || undefined })),
  };
  writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`);
  return file;
}

/** Kills every process the bench started and removes its directories (on exit, failure, Ctrl-C). */
function stopEverythingNow(): void {
  stopEveryFleetNow();
  stopEveryMosquittoNow();
  stopEveryFloorNow();
}

process.on('exit', stopEverythingNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping every peer\n`);
    stopEverythingNow();
    process.exit(130);
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    stopEverythingNow();
    process.exitCode = 1;
  },
);
