/**
 * Automation benchmarks (issue 5), in a mesh of 3 peers (A, B, C) with the product's DEFAULTS
 * timings (automationStartupMs 5000, automationSettleMs 1000), on loopback only:
 *
 * 1. Trigger latency across servers: a HighThreshold owned by B watches a DataPoint owned by A
 *    (hysteresis 0); its SetValue child writes 1 to a DataPoint owned by B. The bench resets the
 *    target to 0 on B, writes a low value to A's point, then a high one, and times from sending the
 *    high value (A's stream) to the SetValue's write arriving on B's stream. (A SetValue skips a
 *    write that would not change its target, hence the reset.)
 * 2. Failover of placed work: a Compute (average of two inputs owned by A, target owned by A) and
 *    an OutgoingWebHook under the Compute's target, both owned by C with placement "any" and
 *    prefer C, post to a receiver in the bench with `{{runner}}` in the body. Inputs are written
 *    every 50 ms; C is killed with SIGKILL; the time until the receiver gets a post from another
 *    runner (and until the Compute's target shows a value from an input written after the kill) is
 *    measured; then C is started again on its data and the jobs must come back to it.
 * 3. Executor runs per second one peer sustains: 200 Calculations owned by B, each with its own
 *    input and target DataPoint on B, driven by pipelined input writes through B's stream; runs
 *    are counted from B's shoal_automation_runs_total over a fixed window.
 */

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../test/support/cluster.ts';
import { Fleet, type FleetPeer } from './fleet.ts';
import { cpuMs } from './proc-stats.ts';
import {
  dataPoint,
  meshOf,
  metricSum,
  ms,
  percentile,
  pipeline,
  StreamClient,
  type SuiteContext,
} from './replication.ts';

export interface AutomationPlan {
  crossings: number;
  failovers: number;
  calculations: number;
  runsWindowMs: number;
}

interface Post {
  at: number;
  runner: string;
  value: unknown;
}

/** An HTTP receiver on 127.0.0.1 for the OutgoingWebHook's posts. */
async function receiver(): Promise<{ server: Server; url: string; posts: Post[] }> {
  const posts: Post[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      const at = performance.now();
      try {
        const parsed = JSON.parse(body) as { runner: string; value: unknown };
        posts.push({ at, runner: parsed.runner, value: parsed.value });
      } catch {
        posts.push({ at, runner: `unparsable: ${body.slice(0, 80)}`, value: undefined });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/hook`, posts };
}

export async function automationSuite(ctx: SuiteContext, plan: AutomationPlan): Promise<void> {
  const fleet = new Fleet();
  const clients: StreamClient[] = [];
  const hook = await receiver();
  let driver: ReturnType<typeof setInterval> | undefined;
  try {
    ctx.log('\n== automation, mesh of 3');
    const started = await fleet.startMany(3);
    const [a, b] = started as [FleetPeer, FleetPeer, FleetPeer];
    let c = started[2]!;
    await meshOf(started, 60_000, true);
    const clientA = await StreamClient.open(a);
    const clientB = await StreamClient.open(b);
    clients.push(clientA, clientB);
    const all = (): FleetPeer[] => [a, b, c];

    // --- 1. Threshold on B over A's point, SetValue to B's point -------------------------------
    const src = await dataPoint(clientA, 'sensor-a', all());
    const tgt = await dataPoint(clientB, 'relay-b', all());
    const threshold = await clientB.must({
      t: 'create',
      node: { type: 'HighThreshold', name: 'too-high', parent: src, meta: { threshold: 50, hysteresis: 0 } },
    });
    await clientB.must({
      t: 'create',
      node: { type: 'SetValue', name: 'switch-on', parent: threshold.id, meta: { target: tgt, value: 1 } },
    });
    let landed: ((at: number) => void) | undefined;
    clientB.onValue = (id, value, at) => {
      if (id === tgt && value === 1) landed?.(at);
    };
    const latencies: number[] = [];
    const fromAck: number[] = [];
    let lost = 0;
    for (let k = 0; k < plan.crossings; k++) {
      await clientB.must({ t: 'set', id: tgt, value: 0 });
      await clientA.must({ t: 'set', id: src, value: 10 + (k % 30) });
      const arrived = new Promise<number | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 5000);
        landed = (at) => {
          clearTimeout(timer);
          resolve(at);
        };
      });
      const t0 = performance.now();
      const ack = clientA.must({ t: 'set', id: src, value: 60 + (k % 30) }).then(() => performance.now());
      const at = await arrived;
      landed = undefined;
      const ackAt = await ack;
      if (at === undefined) {
        lost++;
        continue;
      }
      latencies.push(at - t0);
      fromAck.push(at - ackAt);
    }
    const sorted = Float64Array.from(latencies).sort();
    const sortedAck = Float64Array.from(fromAck).sort();
    ctx.log(
      `  threshold on B over A's point → SetValue on B landed: ${latencies.length}/${plan.crossings} crossings, ` +
        `p50 ${ms(percentile(sorted, 50))}, p99 ${ms(percentile(sorted, 99))}, max ${ms(sorted[sorted.length - 1])}; ` +
        `from A's answer: p50 ${ms(percentile(sortedAck, 50))}, p99 ${ms(percentile(sortedAck, 99))}`,
    );
    ctx.figure({
      key: 'auto.threshold.p50',
      label: 'change on A → HighThreshold on B → SetValue landed on B, p50',
      unit: 'ms',
      value: percentile(sorted, 50),
    });
    ctx.figure({
      key: 'auto.threshold.p99',
      label: 'change on A → HighThreshold on B → SetValue landed on B, p99',
      unit: 'ms',
      value: percentile(sorted, 99),
      note: `${latencies.length} crossings, ${lost} did not land within 5 s`,
    });
    ctx.figure({
      key: 'auto.threshold.lost',
      label: 'threshold crossings whose SetValue did not land within 5 s',
      unit: 'crossings',
      value: lost,
      target: { text: '= 0', pass: lost === 0 },
    });
    ctx.detail('automation.threshold', { crossings: plan.crossings, latencies, fromAck, lost });
    clientB.onValue = undefined;

    // --- 2. Failover of placed work ---------------------------------------------------------
    const in1 = await dataPoint(clientA, 'input-1', all());
    const in2 = await dataPoint(clientA, 'input-2', all());
    const out = await dataPoint(clientA, 'average', all());
    await clientA.must({ t: 'set', id: in2, value: 0 });
    const clientC = await StreamClient.open(c);
    const cId = c.process.id;
    await clientC.must({
      t: 'create',
      node: {
        type: 'Compute',
        name: 'average-anywhere',
        meta: { op: 'average', inputs: [in1, in2], target: out, placement: 'any', prefer: cId },
      },
    });
    await clientC.must({
      t: 'create',
      node: {
        type: 'OutgoingWebHook',
        name: 'tell-the-bench',
        parent: out,
        meta: {
          url: hook.url,
          method: 'POST',
          body: '{"runner":"{{runner}}","value":{{value}}}',
          placement: 'any',
          prefer: cId,
        },
      },
    });
    clientC.close();
    // Inputs every 50 ms; in1 = i, so the average is i/2 and tells which write it came from.
    const written = new Map<number, number>();
    let i = 0;
    driver = setInterval(() => {
      i++;
      written.set(i, performance.now());
      clientA.ws.send(JSON.stringify({ t: 'set', rid: `d${i}`, id: in1, value: i }));
    }, 50);
    let outSeen: ((value: number, at: number) => void) | undefined;
    clientA.onValue = (id, value, at) => {
      if (id === out) outSeen?.(value, at);
    };
    const postFrom = (runner: (r: string) => boolean, after: number, timeoutMs: number): Promise<Post> =>
      waitFor('a webhook post', () => hook.posts.find((p) => p.at > after && runner(p.runner)), timeoutMs, 5);
    const first = await postFrom((r) => r === cId, 0, 60_000);
    ctx.log(`  the Compute and the OutgoingWebHook run on C (first post ${first.value})`);
    const failover: number[] = [];
    const resumed: number[] = [];
    const back: number[] = [];
    const overlaps: number[] = [];
    const failures: string[] = [];
    for (let rep = 1; rep <= plan.failovers; rep++) {
      let computeAt: number | undefined;
      const tKill = performance.now();
      outSeen = (value, at) => {
        const from = written.get(Math.round(value * 2));
        if (computeAt === undefined && from !== undefined && from > tKill) computeAt = at;
      };
      c.process.child.kill('SIGKILL');
      try {
        const post = await postFrom((r) => r !== cId, tKill, 30_000);
        failover.push(post.at - tKill);
        await waitFor('the Compute to resume', () => computeAt, 30_000, 5);
        resumed.push(computeAt! - tKill);
        ctx.log(
          `  kill -9 C (${rep}/${plan.failovers}): a post from ${post.runner.slice(0, 8)} after ` +
            `${(post.at - tKill).toFixed(0)} ms; the Compute's target moved after ${(computeAt! - tKill).toFixed(0)} ms`,
        );
      } catch (err) {
        failures.push((err as Error).message);
        ctx.log(`  kill -9 C (${rep}/${plan.failovers}): FAILED ${(err as Error).message}`);
      }
      outSeen = undefined;
      await c.process.exited;
      c = await fleet.restart(c);
      await meshOf(all(), 60_000);
      const readyAt = performance.now() - (Date.now() - c.readyAt);
      try {
        const home = await postFrom((r) => r === cId, readyAt, 60_000);
        back.push(home.at - readyAt);
        // Fencing: once C posts again, no other runner should (allow what was in flight, 200 ms).
        await sleep(2000);
        const others = hook.posts.filter((p) => p.at > home.at + 200 && p.runner !== cId).length;
        overlaps.push(others);
        ctx.log(
          `    C restarted: posts come from C again ${(home.at - readyAt).toFixed(0)} ms after it was ready ` +
            `(automationStartupMs + settle); posts from others after that: ${others}`,
        );
      } catch (err) {
        failures.push(`back to C: ${(err as Error).message}`);
        ctx.log(`    C restarted: FAILED ${(err as Error).message}`);
      }
    }
    clearInterval(driver);
    driver = undefined;
    clientA.onValue = undefined;
    const median = (xs: number[]): number | undefined => percentile(Float64Array.from(xs).sort(), 50);
    ctx.figure({
      key: 'auto.failover.webhook',
      label: 'kill -9 of the runner → webhook posts from another runner (median)',
      unit: 'ms',
      value: median(failover),
      note: `runs: ${failover.map((x) => x.toFixed(0)).join(', ')} ms; failureTimeoutMs does not apply (sockets close), automationSettleMs 1000`,
    });
    ctx.figure({
      key: 'auto.failover.compute',
      label: 'kill -9 of the runner → Compute writes again from another runner (median)',
      unit: 'ms',
      value: median(resumed),
      note: `runs: ${resumed.map((x) => x.toFixed(0)).join(', ')} ms`,
    });
    ctx.figure({
      key: 'auto.failover.back',
      label: 'runner restarted (ready) → jobs back on the preferred runner (median)',
      unit: 'ms',
      value: median(back),
      note: `runs: ${back.map((x) => x.toFixed(0)).join(', ')} ms; automationStartupMs 5000 + automationSettleMs 1000`,
    });
    ctx.figure({
      key: 'auto.failover.overlap',
      label: 'webhook posts from another runner after the preferred one took over again',
      unit: 'posts',
      value: overlaps.reduce((s, x) => s + x, 0),
      target: {
        text: '= 0, every failover measured',
        pass: overlaps.every((x) => x === 0) && failures.length === 0,
      },
    });
    ctx.detail('automation.failover', {
      failover,
      resumed,
      back,
      overlaps,
      failures,
      posts: hook.posts.length,
    });

    // --- 3. Executor runs per second on one peer ------------------------------------------------
    const n = plan.calculations;
    const inputs: string[] = [];
    const targets: string[] = [];
    const made = await pipeline(
      clientB,
      2 * n,
      (k) =>
        `{"t":"create","rid":${k},"node":{"type":"DataPoint","name":"calc-${k < n ? 'in' : 'out'}-${k % n}"}}`,
      200,
    );
    if (made.ok !== 2 * n) throw new Error(`made only ${made.ok} of ${2 * n} data points`);
    // The pipeline does not hand back nodes: read them from B.
    const { body } = await b.process.get<{ nodes: { id: string; name: string }[] }>(
      `/api/v1/nodes?owner=${b.process.id}&type=DataPoint`,
    );
    const byName = new Map(body.nodes.map((node) => [node.name, node.id]));
    for (let k = 0; k < n; k++) {
      inputs.push(byName.get(`calc-in-${k}`)!);
      targets.push(byName.get(`calc-out-${k}`)!);
    }
    const calcs = await pipeline(
      clientB,
      n,
      (k) =>
        JSON.stringify({
          t: 'create',
          rid: k,
          node: {
            type: 'Calculation',
            name: `calc-${k}`,
            meta: { formula: 'x * 2 + 1', inputs: { x: inputs[k] }, target: targets[k] },
          },
        }),
      50,
    );
    if (calcs.ok !== n)
      throw new Error(`made only ${calcs.ok} of ${n} Calculations: ${JSON.stringify(calcs.failed)}`);
    ctx.log(`  ${n} Calculations on B made in ${(calcs.ms / 1000).toFixed(1)} s`);
    await sleep(1000);
    const runsOf = async (): Promise<{ ok: number; error: number }> => {
      const text = await b.process.metrics();
      return {
        ok: metricSum(text, 'shoal_automation_runs_total', { type: 'Calculation', result: 'ok' }),
        error: metricSum(text, 'shoal_automation_runs_total', { type: 'Calculation', result: 'error' }),
      };
    };
    // Input writes, round robin over the inputs, 500 in flight, for the window.
    let next = 0;
    let acked = 0;
    let refused = 0;
    let inFlight = 0;
    let open = true;
    const pump = (): void => {
      while (open && inFlight < 500) {
        const k = next++;
        inFlight++;
        clientB.ws.send(`{"t":"set","rid":${k},"id":"${inputs[k % n]}","value":${k}}`);
      }
    };
    clientB.onResult = (_rid, ok) => {
      inFlight--;
      if (ok) acked++;
      else refused++;
      pump();
    };
    pump();
    await sleep(1000); // ramp-up
    const pid = b.process.child.pid!;
    const before = await runsOf();
    const ackedBefore = acked;
    const cpu0 = cpuMs(pid);
    const t0 = performance.now();
    await sleep(plan.runsWindowMs);
    const after = await runsOf();
    const window = performance.now() - t0;
    const cpu = ((cpuMs(pid) - cpu0) / window) * 100;
    const ackedIn = acked - ackedBefore;
    open = false;
    await waitFor('the input writes to be answered', () => inFlight === 0, 30_000, 10);
    clientB.onResult = undefined;
    const runs = after.ok + after.error - before.ok - before.error;
    const perSecond = (runs / window) * 1000;
    ctx.log(
      `  ${n} Calculations on B: ${runs} runs in ${(window / 1000).toFixed(1)} s = ${perSecond.toFixed(0)} runs/s ` +
        `(${after.error - before.error} errors), ${((ackedIn / window) * 1000).toFixed(0)} input writes/s acknowledged ` +
        `(${refused} refused), B at ${cpu.toFixed(0)} % of a core`,
    );
    ctx.figure({
      key: 'auto.runs_per_s',
      label: `executor runs per second on one peer (${n} Calculations, input writes pipelined)`,
      unit: 'runs/s',
      value: perSecond,
      note: `${((ackedIn / window) * 1000).toFixed(0)} input writes/s; a run also writes its target; B used ${cpu.toFixed(0)} % of a core`,
    });
    ctx.figure({
      key: 'auto.runs.errors',
      label: 'executor runs that failed during the runs/s window',
      unit: 'runs',
      value: after.error - before.error,
    });
    ctx.detail('automation.runs', {
      calculations: n,
      windowMs: window,
      runs,
      errors: after.error - before.error,
      inputWritesAcked: ackedIn,
      refused,
      cpuPercent: cpu,
    });
  } finally {
    if (driver) clearInterval(driver);
    for (const client of clients) client.close();
    hook.server.closeAllConnections();
    hook.server.close();
    await fleet.stop();
    ctx.warnings('automation', fleet.warnings);
  }
}
