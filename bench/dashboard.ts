/**
 * How the dashboard keeps up with a busy mesh, measured in a real browser: 25 peers on loopback,
 * 2,000 data points spread over them, 200 value writes per second in total for 20 s, and the
 * dashboard of one peer open in headless chromium (/usr/bin/chromium) with every data point on
 * screen. In the page it measures frames per second (a requestAnimationFrame counter), long tasks,
 * and the delay from a write being sent to its value being in the DOM (each written value is the
 * time it was sent, in ms since the start; a MutationObserver on the tree reads them back). The
 * DOM is written in the animation frame that paints it, so the delay is event-to-screen less
 * the paint itself.
 *
 * Writes go with PUT to each data point's owner, so the path measured is: owner commits, the
 * mesh replicates to the page's server, its stream tells the page, the page shows it.
 *
 *   npm run build && node --import tsx bench/dashboard.ts [--peers N]
 *
 * Loopback only; every process, browser profile and temporary directory is removed at the end,
 * on failure and on Ctrl-C. A screenshot of the page is left in test-results/dashboard-bench.png.
 * Takes about a minute and a half.
 */

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium } from 'playwright-core';
import WebSocket from 'ws';
import { DEFAULTS } from '../src/config.ts';
import { CHROMIUM, CHROMIUM_ARGS, chromiumMissing } from '../test/support/chromium.ts';
import { CLI, call, fullMesh, type PeerProcess, TestCluster, waitFor } from '../test/support/cluster.ts';
import { percentile } from './replication.ts';

/** Where the screenshot of the busy dashboard goes (git-ignored). */
const RESULTS = fileURLToPath(new URL('../test-results/', import.meta.url));
/** `--peers N` (default 25): fewer peers separate what the page costs from what the mesh can carry. */
const PEERS = peersArgument(process.argv.slice(2));
const POINTS = 2000;
const WRITES_PER_SECOND = 200;
const DRIVE_MS = 20_000;
/** Peers started at once: a boot storm of all of them would starve a small machine. */
const START_BATCH = 5;
/** Requests in flight at once while creating nodes. */
const MAX_IN_FLIGHT = 64;
/** Writes in flight at once; a write due while this many are unanswered is counted, not sent. */
const MAX_WRITES_IN_FLIGHT = 256;

interface PageStats {
  frames: number[];
  delays: number[];
  ownDelays: number[];
  longTasks: number[];
}

/**
 * Installed in the page (as text: the bundler's helpers do not exist there). Collects frame
 * times, long tasks, and for each value that appears in the tree, now minus the time it was sent.
 */
const INSTRUMENT = `function (base) {
  const stats = { frames: [], delays: [], ownDelays: [], longTasks: [] };
  window.benchStats = stats;
  function frame(t) {
    stats.frames.push(performance.timeOrigin + t);
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
  new PerformanceObserver(function (list) {
    for (const entry of list.getEntries()) stats.longTasks.push(entry.duration);
  }).observe({ type: 'longtask' });
  new MutationObserver(function (records) {
    const now = Date.now();
    for (const record of records) {
      const el = record.type === 'characterData' ? record.target.parentElement : record.target;
      if (!el || !el.hasAttribute('data-value-id')) continue;
      const sent = Number((el.textContent || '').replace(/[^0-9.]/g, ''));
      if (!(sent > 0)) continue;
      stats.delays.push(now - (base + sent));
      const received = window.benchReceived.get(sent);
      if (received !== undefined) stats.ownDelays.push(now - received);
      window.benchReceived.delete(sent);
    }
  }).observe(document.querySelector('.tree'), { subtree: true, characterData: true, childList: true });
}`;

/**
 * Run in the page before its own scripts: notes when each value event arrives on a WebSocket
 * (this listener is added before the page's own handler, so it runs first).
 */
const RECEIPT_CLOCK = `window.benchReceived = new Map();
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', function (e) {
      const m = JSON.parse(e.data);
      const value = m.t === 'event' && m.event.op === 'value' ? m.event.node.value : undefined;
      if (typeof value === 'number') window.benchReceived.set(value, Date.now());
    });
  }
};`;

let cluster: TestCluster | undefined;
let context: BrowserContext | undefined;
let profile = '';

async function cleanUp(): Promise<void> {
  await context?.close().catch(() => {});
  context = undefined;
  await cluster?.stop().catch(() => {});
  cluster = undefined;
  if (profile) rmSync(profile, { recursive: true, force: true });
  profile = '';
}

process.once('SIGINT', () => {
  console.error('interrupted: cleaning up');
  void cleanUp().then(() => process.exit(130));
});

function peersArgument(args: string[]): number {
  const at = args.indexOf('--peers');
  if (at === -1) return 25;
  const n = Number(args[at + 1]);
  if (!Number.isInteger(n) || n < 1 || n > 100) {
    console.error('--peers: a whole number from 1 to 100');
    process.exit(2);
  }
  return n;
}

/** Runs `jobs` with at most `limit` at once. */
async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

/** mean, min, p50, p99, max of `values`, as text. */
function summary(values: number[]): string[] {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return ['–', '–', '–', '–', '–'];
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return [
    mean.toFixed(0),
    sorted[0]!,
    percentile(sorted, 50)!,
    percentile(sorted, 99)!,
    sorted[sorted.length - 1]!,
  ].map((v) => String(typeof v === 'number' ? Math.round(v) : v));
}

function since(start: number): string {
  return `${((Date.now() - start) / 1000).toFixed(1)} s`;
}

async function main(): Promise<void> {
  const missing = chromiumMissing();
  if (missing) {
    console.error(missing);
    process.exit(2);
  }
  if (!existsSync(CLI)) {
    console.error(`${CLI} is missing: run npm run build first`);
    process.exit(2);
  }
  const t0 = Date.now();

  // This measures the page, not the mesh: product timings (the test ones beat every 100 ms) and
  // commits that survive a crash but skip the fsync, so 25 peers on a small machine leave the
  // browser some CPU.
  cluster = new TestCluster({
    config: {
      heartbeatIntervalMs: DEFAULTS.heartbeatIntervalMs,
      failureTimeoutMs: DEFAULTS.failureTimeoutMs,
      storeSync: 'normal',
    },
    readyTimeoutMs: 90_000, // A boot storm of 25 peers on 2 cores.
  });
  const peers: PeerProcess[] = [];
  for (let i = 0; i < PEERS; i += START_BATCH) {
    const batch = Array.from({ length: Math.min(START_BATCH, PEERS - i) }, (_, j) =>
      cluster!.start({ name: `server-${String(i + j + 1).padStart(2, '0')}` }),
    );
    peers.push(...(await Promise.all(batch)));
  }
  await waitFor(`a full mesh of ${PEERS}`, () => fullMesh(peers), 90_000, 500);
  console.error(`${PEERS} peers up and fully linked after ${since(t0)}`);

  // 2,000 data points, spread evenly, under one project on each server.
  const projects = await Promise.all(
    peers.map((p) => call<{ id: string }>(p, 'POST', '/api/v1/nodes', { type: 'Project', name: 'sensors' })),
  );
  const points = await pool(
    Array.from({ length: POINTS }, (_, i) => async () => {
      const owner = peers[i % PEERS]!;
      const node = await call<{ id: string }>(owner, 'POST', '/api/v1/nodes', {
        type: 'DataPoint',
        name: `sensor ${String(Math.floor(i / PEERS) + 1).padStart(2, '0')}`,
        parent: projects[i % PEERS]!.id,
        meta: { unit: 'ms' },
      });
      return { id: node.id, owner };
    }),
    MAX_IN_FLIGHT,
  );
  const viewer = peers[0]!;
  await waitFor(
    `${POINTS} data points on ${viewer.name}`,
    async () =>
      (await call<{ nodes: unknown[] }>(viewer, 'GET', '/api/v1/nodes?type=DataPoint')).nodes.length ===
      POINTS,
    60_000,
    250,
  );
  console.error(`${POINTS} data points made after ${since(t0)}`);

  profile = mkdtempSync(join(tmpdir(), 'shoal-bench-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [...CHROMIUM_ARGS],
  });
  await context.addInitScript({
    content: `localStorage.setItem('shoal.apiKey', ${JSON.stringify(viewer.apiKey)});\n${RECEIPT_CLOCK}`,
  });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  const opened = Date.now();
  await page.goto(`${viewer.url}/`);
  await page.waitForFunction(
    `document.querySelectorAll('.tree [data-value-id]').length === ${POINTS}`,
    undefined,
    {
      timeout: 60_000,
      polling: 100,
    },
  );
  const firstScreenMs = Date.now() - opened;
  await page.waitForTimeout(1000);

  // The page's main-thread time by kind, from the browser itself (DevTools Performance domain).
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const mainThread = async (): Promise<Record<string, number>> =>
    Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));

  const base = Date.now();
  // The same values as the viewer's server announces them on its stream: the page's delay less
  // this one is what the dashboard itself adds.
  const streamDelays: number[] = [];
  const stream = new WebSocket(`${viewer.url.replace('http', 'ws')}/api/v1/stream`, {
    headers: { authorization: `Bearer ${viewer.apiKey}` },
  });
  stream.on('message', (data: Buffer) => {
    const message = JSON.parse(data.toString()) as {
      t: string;
      event?: { op?: string; node?: { value?: unknown } };
    };
    const value = message.event?.op === 'value' ? message.event.node?.value : undefined;
    if (typeof value === 'number' && value > 0) streamDelays.push(Date.now() - (base + value));
  });
  await new Promise((resolve, reject) => stream.once('open', resolve).once('error', reject));
  await page.evaluate(`(${INSTRUMENT})(${base})`);

  // 200 writes a second, round-robin over the points, each to the point's owner.
  let sent = 0;
  let ok = 0;
  let failed = 0;
  let inFlight = 0;
  let skipped = 0;
  const acks: number[] = [];
  const driveStart = Date.now();
  const threadBefore = await mainThread();
  await new Promise<void>((resolve) => {
    let reported = 0;
    const timer = setInterval(() => {
      const elapsed = Date.now() - driveStart;
      if (elapsed >= DRIVE_MS) {
        clearInterval(timer);
        resolve();
        return;
      }
      if (elapsed - reported >= 5000) {
        reported = elapsed;
        console.error(
          `  ${Math.round(elapsed / 1000)} s: ${sent} writes sent, ${ok} acknowledged, ${inFlight} in flight`,
        );
      }
      const due = Math.floor((elapsed * WRITES_PER_SECOND) / 1000);
      while (sent + skipped < due) {
        if (inFlight >= MAX_WRITES_IN_FLIGHT) {
          skipped++;
          continue;
        }
        const point = points[(sent + skipped) % POINTS]!;
        const at = Date.now();
        const value = at - base;
        sent++;
        inFlight++;
        call(point.owner, 'PUT', `/api/v1/nodes/${point.id}/value`, { value })
          .then(
            () => {
              ok++;
              acks.push(Date.now() - at);
            },
            () => failed++,
          )
          .finally(() => inFlight--);
      }
    }, 5);
  });
  const threadAfter = await mainThread();
  const threadSeconds = (threadAfter.Timestamp ?? 0) - (threadBefore.Timestamp ?? 0);
  /** Percent of the drive's wall time that metric `name` (seconds) grew by. */
  const busy = (name: string): string =>
    ((((threadAfter[name] ?? 0) - (threadBefore[name] ?? 0)) / threadSeconds) * 100).toFixed(1);
  try {
    await waitFor('the last writes', () => inFlight === 0, 30_000, 100);
  } catch {
    console.error(`${inFlight} writes still unanswered 30 s after the last was sent`);
  }
  await page.waitForTimeout(1500);
  stream.close();
  const stats = (await page.evaluate('window.benchStats')) as PageStats;
  mkdirSync(RESULTS, { recursive: true });
  await page.screenshot({ path: join(RESULTS, 'dashboard-bench.png') });

  // Frames per second in whole seconds of the drive.
  const perSecond: number[] = [];
  for (let s = 0; s < Math.floor(DRIVE_MS / 1000); s++) {
    const from = driveStart + s * 1000;
    perSecond.push(stats.frames.filter((t) => t >= from && t < from + 1000).length);
  }
  const fpsMean = perSecond.reduce((a, b) => a + b, 0) / perSecond.length;
  const longest = stats.longTasks.length ? Math.max(...stats.longTasks) : 0;
  const browser =
    context.browser()?.version() ??
    (await page.evaluate<string>('navigator.userAgent')).match(/Chrome\/(\S+)/)?.[1];

  const row = (name: string, ...cells: string[]): string =>
    `${name.padEnd(28)}${cells.map((c) => c.padStart(9)).join('')}`;
  console.log(
    [
      '',
      `dashboard: ${PEERS} peers, ${POINTS} data points, ${WRITES_PER_SECOND} writes/s for ${DRIVE_MS / 1000} s; page on ${viewer.name}, chromium ${browser} headless, 1440x900`,
      row('', 'mean', 'min', 'p50', 'p99', 'max'),
      row(
        'frames per second',
        fpsMean.toFixed(1),
        String(Math.min(...perSecond)),
        '',
        '',
        String(Math.max(...perSecond)),
      ),
      row('write acknowledged, ms', ...summary(acks)),
      row(`write on ${viewer.name}'s stream, ms`, ...summary(streamDelays)),
      row('write to DOM, ms', ...summary(stats.delays)),
      row('page: message to DOM, ms', ...summary(stats.ownDelays)),
      `writes: ${(sent / (DRIVE_MS / 1000)).toFixed(0)}/s achieved; ${sent} sent, ${ok} acknowledged, ${failed} failed${skipped ? `, ${skipped} not sent (too many in flight)` : ''}; values seen on the stream: ${streamDelays.length}, in the DOM: ${stats.delays.length}`,
      `page main thread while driving: CPU ${busy('ThreadTime')}% of a core; busy ${busy('TaskDuration')}% of the time (script ${busy('ScriptDuration')}%, style ${busy('RecalcStyleDuration')}%, layout ${busy('LayoutDuration')}%, other ${busy('TaskOtherDuration')}%)`,
      `long tasks (> 50 ms) while driving: ${stats.longTasks.length}${stats.longTasks.length ? `, longest ${Math.round(longest)} ms` : ''}`,
      `first load: all ${POINTS} data points on screen ${firstScreenMs} ms after navigation`,
      `page errors: ${errors.length ? errors.join('; ') : 'none'}`,
      `total time ${since(t0)}`,
    ].join('\n'),
  );
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
