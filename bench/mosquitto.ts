/**
 * Mosquitto side by side with shoal, at the same fan-out: a broker (the Debian `mosquitto`
 * package) on 127.0.0.1 on a random port with a minimal config (listener, allow_anonymous,
 * persistence false: everything else its defaults), one publisher and N-1 subscribers, each its
 * own process (`mosquitto_pub -l`, fed lines by the bench through its stdin; `mosquitto_sub`, whose
 * stdout the bench reads), QoS 1. Each message is the bench's clock at send in whole microseconds,
 * exactly as the shoal writes are, and arrivals are timed when the bench reads them, so both
 * systems are measured from the same process with the same hop in and out.
 *
 * The same figures as for shoal: p50/p99 of publish → on all subscribers at fixed rates, and the
 * highest rate all subscribers keep up with (same ramp, same criteria; Mosquitto's QoS 1 publisher
 * has no per-message answer the bench can see, so "acknowledged" is "sent" here).
 *
 * Every process and the temporary directory are removed at the end, on failure and on Ctrl-C
 * (stopEveryMosquittoNow).
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpuMs } from './proc-stats.ts';
import {
  describeStep,
  type FanOutPlan,
  type Load,
  type LoadRun,
  paced,
  type ReplicationFindings,
  ramp,
  type StepResult,
  type SuiteContext,
  warmUp,
} from './replication.ts';

const TOPIC = 'shoal/bench';
/** Debian puts the broker in /usr/sbin, which is not on every user's PATH. */
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto';
const live = new Set<ChildProcess>();
const dirs = new Set<string>();

/** Kills every Mosquitto process the bench started and removes their directories. */
export function stopEveryMosquittoNow(): void {
  for (const child of live) {
    try {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
  live.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

async function killAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

/** The mosquitto binary, or undefined when it is not installed. */
function mosquittoVersion(): string | undefined {
  try {
    const out = execFileSync(MOSQUITTO, ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return /mosquitto version (\S+)/.exec(out)?.[1];
  } catch (err) {
    const out = String((err as { stdout?: string }).stdout ?? '');
    return /mosquitto version (\S+)/.exec(out)?.[1];
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A broker, its publisher and its subscribers. */
class MosquittoSet implements Load {
  readonly dir = mkdtempSync(join(tmpdir(), 'shoal-bench-mosquitto-'));
  readonly port = 20_000 + Math.floor(Math.random() * 40_000);
  readonly acks = false;
  broker!: ChildProcess;
  publisher!: ChildProcess;
  readonly subscribers: ChildProcess[] = [];
  readonly log: string[] = [];
  /** Probe messages each subscriber has seen. */
  readonly probes: number[] = [];
  #run: LoadRun | undefined;
  #gone: string | undefined;

  constructor(readonly fanOut: number) {
    dirs.add(this.dir);
  }

  get observers(): number {
    return this.fanOut;
  }

  get processes(): ChildProcess[] {
    return [this.broker, this.publisher, ...this.subscribers].filter(Boolean);
  }

  async start(): Promise<void> {
    const conf = join(this.dir, 'mosquitto.conf');
    writeFileSync(conf, `listener ${this.port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
    this.broker = this.#spawn(MOSQUITTO, ['-c', conf], 'broker');
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(this.port))) {
      if (this.#gone || Date.now() > deadline)
        throw new Error(`mosquitto did not listen on ${this.port}: ${this.log.join(' | ')}`);
      await sleep(50);
    }
    const common = ['-h', '127.0.0.1', '-p', String(this.port), '-q', '1', '-t', TOPIC];
    for (let k = 0; k < this.fanOut; k++) {
      const sub = this.#spawn('mosquitto_sub', [...common, '-i', `bench-sub-${k}`], `sub-${k}`);
      this.probes.push(0);
      let partial = '';
      sub.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        const at = performance.now();
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (line === 'probe') this.probes[k]!++;
          else this.#run?.arrive(k, Number(line), at);
        }
      });
      this.subscribers.push(sub);
    }
    this.publisher = this.#spawn('mosquitto_pub', [...common, '-l', '-i', 'bench-pub'], 'pub');
    this.publisher.stdin!.on('error', () => {});
    // Subscribed once each subscriber has seen a probe.
    const probeDeadline = Date.now() + 20_000;
    while (this.probes.some((p) => p === 0)) {
      if (this.#gone) throw new Error(this.#gone);
      if (Date.now() > probeDeadline) throw new Error('mosquitto subscribers did not get the probes');
      this.publisher.stdin!.write('probe\n');
      await sleep(100);
    }
  }

  attach(run: LoadRun | undefined): void {
    this.#run = run;
  }

  send(run: LoadRun, n: number): void {
    let lines = '';
    for (let k = 0; k < n; k++) lines += `${run.next().value}\n`;
    this.publisher.stdin!.write(lines);
  }

  broken(): string | undefined {
    return this.#gone;
  }

  blind(): string | undefined {
    return this.#gone;
  }

  async stop(): Promise<void> {
    await killAll(this.processes);
    rmSync(this.dir, { recursive: true, force: true });
    dirs.delete(this.dir);
  }

  #spawn(command: string, args: string[], name: string): ChildProcess {
    const child = track(spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line.trim()) this.log.push(`${name}: ${line}`);
    });
    if (name === 'broker') child.stdout!.resume();
    child.once('exit', (code, signal) => {
      this.#gone ??= `${name} exited (${signal ?? code})`;
    });
    child.once('error', (err) => {
      this.#gone ??= `${name}: ${err.message}`;
    });
    return child;
  }
}

export type MosquittoFindings = ReplicationFindings;

export async function mosquittoSuite(ctx: SuiteContext, plan: FanOutPlan): Promise<MosquittoFindings> {
  const findings: MosquittoFindings = { bySize: {} };
  const version = mosquittoVersion();
  if (!version) throw new Error('mosquitto is not installed (as root: scripts/install-test-deps.sh --bench)');
  for (const n of plan.sizes) {
    ctx.log(`\n== Mosquitto ${version}, 1 publisher and ${n - 1} subscribers (QoS 1)`);
    const set = new MosquittoSet(n - 1);
    try {
      await set.start();
      const settle = (): Promise<void> => sleep(500);
      await warmUp(set, ctx.log, settle);
      const steps: StepResult[] = [];
      for (const [rate, duration] of plan.rates) {
        const pids = set.processes.map((c) => c.pid!);
        const cpu0 = pids.map(cpuMs);
        const t0 = performance.now();
        const step = await paced(set, rate, duration, 60_000);
        const wall = performance.now() - t0;
        const usedMs = pids.map((pid, i) => cpuMs(pid) - cpu0[i]!);
        const cpu = usedMs.map((ms) => (ms / wall) * 100);
        steps.push(step);
        ctx.log(`  ${describeStep(step)}`);
        const perMessage = (ms: number): number => (ms * 1000) / Math.max(1, step.sent);
        const used = {
          brokerUs: perMessage(usedMs[0]!),
          allUs: perMessage(usedMs.reduce((sum, x) => sum + x, 0)),
        };
        step.cpu = used;
        ctx.log(
          `    CPU over the step: broker ${cpu[0]!.toFixed(0)} %, publisher ${cpu[1]!.toFixed(0)} %, subscribers ` +
            `${Math.min(...cpu.slice(2)).toFixed(0)}–${Math.max(...cpu.slice(2)).toFixed(0)} % of a core; per message: ` +
            `broker ${used.brokerUs.toFixed(0)} µs, all processes ${used.allUs.toFixed(0)} µs`,
        );
        if (rate === 1000) {
          ctx.figure({
            key: `mqtt.${n}.cpu_per_msg`,
            label: `Mosquitto 1+${n - 1}, 1000/s: CPU per message, all processes (broker, publisher, subscribers)`,
            unit: 'µs',
            value: used.allUs,
            note: `broker ${used.brokerUs.toFixed(0)} µs per message`,
          });
        }
        ctx.figure({
          key: `mqtt.${n}.${rate}.p50`,
          label: `Mosquitto 1+${n - 1}, ${rate}/s: publish → on all subscribers, p50`,
          unit: 'ms',
          value: step.p50,
          ...(step.keptUp ? {} : { note: `not kept up: ${step.why}` }),
        });
        ctx.figure({
          key: `mqtt.${n}.${rate}.p99`,
          label: `Mosquitto 1+${n - 1}, ${rate}/s: publish → on all subscribers, p99`,
          unit: 'ms',
          value: step.p99,
          ...(step.keptUp ? {} : { note: `not kept up: ${step.why}` }),
        });
        if (step.missing > 0) {
          ctx.figure({
            key: `mqtt.${n}.${rate}.missing`,
            label: `Mosquitto 1+${n - 1}, ${rate}/s: messages missing on some subscriber`,
            unit: 'msgs',
            value: step.missing,
          });
        }
        await settle();
      }
      ctx.log(`  ramp (${plan.rampStepMs / 1000} s a step):`);
      const ramped = await ramp(set, plan.rampRates, plan.rampStepMs, ctx.log, settle);
      steps.push(...ramped.steps);
      ctx.figure({
        key: `mqtt.${n}.sustained`,
        label: `Mosquitto 1+${n - 1}: highest rate all subscribers keep up with`,
        unit: 'msgs/s',
        value: ramped.sustained,
        note: `stopped at ${ramped.limitedBy}`,
      });
      ctx.detail(`mosquitto.${n}`, {
        version,
        steps,
        sustained: ramped.sustained,
        limitedBy: ramped.limitedBy,
      });
      findings.bySize[n] = { steps, sustained: ramped.sustained, limitedBy: ramped.limitedBy };
    } finally {
      await set.stop();
      // The broker logs every connection on stderr: only its warnings and errors are kept.
      ctx.warnings(
        `mosquitto.${n}`,
        set.log.filter((line) => /error|warn|drop|denied/i.test(line)),
      );
    }
  }
  return findings;
}

/** A sustained rate, marked as a lower bound when it reached the top of the ramp. */
function atLeast(x: { sustained: number; limitedBy: string }): string {
  const topped = x.limitedBy.startsWith("the ramp's top");
  return `${x.sustained}/s${topped ? ' (the top of the ramp: at least)' : ''}`;
}

/** shoal / Mosquitto for each size both measured: latency ratios and the throughput target. */
export function compare(
  ctx: SuiteContext,
  plan: FanOutPlan,
  shoal: ReplicationFindings,
  mqtt: MosquittoFindings,
): void {
  ctx.log('\n== shoal / Mosquitto');
  for (const [size, s] of Object.entries(shoal.bySize)) {
    const m = mqtt.bySize[Number(size)];
    if (!m) continue;
    const fixed = (steps: StepResult[], rate: number) => steps.find((x) => x.rate === rate);
    for (const [rate] of plan.rates) {
      const a = fixed(s.steps, rate);
      const b = fixed(m.steps, rate);
      if (!a || !b) continue;
      for (const p of ['p50', 'p99'] as const) {
        const ratio = a[p] !== undefined && b[p] !== undefined ? a[p] / b[p] : undefined;
        ctx.figure({
          key: `ratio.${size}.${rate}.${p}`,
          label: `${p} latency shoal/Mosquitto, ${size} peers, ${rate}/s`,
          unit: '×',
          value: ratio,
          ...(b.keptUp ? {} : { note: 'Mosquitto did not keep up at this rate' }),
        });
      }
    }
    const ratio = m.sustained > 0 ? s.sustained / m.sustained : undefined;
    ctx.figure({
      key: `ratio.${size}.sustained`,
      label: `sustained rate shoal/Mosquitto, ${size} peers`,
      unit: '×',
      value: ratio,
      target: { text: '≥ 5×', pass: ratio !== undefined && ratio >= 5 },
      note: `shoal ${atLeast(s)}, Mosquitto ${atLeast(m)}`,
    });
  }
}
