/**
 * The Prometheus metrics of one peer, in a registry of its own (several peers may share a process
 * in tests). Components get this object and count; gauges of live state are read on scrape.
 */

import { performance } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/**
 * A labelled counter on a hot path (every frame of a link): `add` is a plain addition, and the sum
 * reaches its counter at the next scrape. prom-client builds and looks up a label string on every
 * `inc`, a cost per frame that showed in CPU and allocation profiles of a busy mesh.
 */
export class Tally {
  #unreported = 0;
  readonly #counter: Counter<string>;
  readonly #labels: Record<string, string>;
  readonly #live: Set<Tally>;

  constructor(counter: Counter<string>, labels: Record<string, string>, live: Set<Tally>) {
    this.#counter = counter;
    this.#labels = labels;
    this.#live = live;
    live.add(this);
  }

  add(n = 1): void {
    this.#unreported += n;
  }

  /** Adds what was counted since the last report to the counter. */
  report(): void {
    if (this.#unreported === 0) return;
    this.#counter.inc(this.#labels, this.#unreported);
    this.#unreported = 0;
  }

  /** Reports what is left, and is read no more. */
  close(): void {
    this.report();
    this.#live.delete(this);
  }
}

export class Metrics {
  readonly registry = new Registry();
  /** The live tallies of each counter, reported when the counter is collected. */
  readonly #tallies = new WeakMap<Counter<string>, Set<Tally>>();

  readonly beaconsSent = this.#counter(
    'shoal_beacons_sent_total',
    'Beacons sent, by kind (hello, reply, bye).',
    ['kind'],
  );
  readonly beaconsReceived = this.#counter(
    'shoal_beacons_received_total',
    'Beacons accepted from other peers of this cluster.',
  );
  readonly beaconsRejected = this.#counter(
    'shoal_beacons_rejected_total',
    'Datagrams on the beacon port refused, by reason (size, magic, version, cluster, malformed, mac, clock, replay, rate, source).',
    ['reason'],
  );
  readonly handshakesRejected = this.#counter(
    'shoal_handshakes_rejected_total',
    'Peer links that failed the handshake, by reason.',
    ['reason'],
  );
  readonly framesRejected = this.#counter(
    'shoal_frames_rejected_total',
    'Frames on established links refused, by reason (auth closes the link; the others are dropped).',
    ['reason'],
  );
  readonly linksOpened = this.#counter(
    'shoal_links_opened_total',
    'Peer links that completed the handshake, by direction (inbound, outbound).',
    ['direction'],
  );
  readonly linksClosed = this.#counter(
    'shoal_links_closed_total',
    'Established peer links closed, by reason.',
    ['reason'],
  );
  readonly linkBytes = this.#counter(
    'shoal_link_bytes_total',
    'Bytes on peer links (sealed frames), by peer and direction (tx, rx).',
    ['peer', 'direction'],
  );
  readonly linkFrames = this.#counter(
    'shoal_link_frames_total',
    'Frames on peer links, by peer and direction (tx, rx).',
    ['peer', 'direction'],
  );
  readonly opsApplied = this.#counter(
    'shoal_replication_ops_applied_total',
    'Ops applied to the store, by source (local writes, remote owners).',
    ['source'],
  );
  readonly snapshots = this.#counter(
    'shoal_replication_snapshots_total',
    'Owner snapshots sent and received (when the ops a peer lacked were compacted away).',
    ['direction'],
  );
  readonly forksMended = this.#counter(
    'shoal_replication_forks_mended_total',
    'Times this server found another copy of itself had numbered changes alike, and merged the two (a server on an older copy of its data).',
  );
  readonly readingsBackfilled = this.#counter(
    'shoal_replication_readings_backfilled_total',
    "Readings of data points fetched after a snapshot (those of the time its ops were missed), new to this server's series.",
  );
  readonly requestsLimited = this.#counter(
    'shoal_api_requests_limited_total',
    'HTTP requests answered 429 because their client sent more than apiRatePerSecond.',
  );
  readonly forwardedWrites = this.#counter(
    'shoal_forwarded_writes_total',
    'Writes forwarded from here to the owner of their node, by result (ok, refused, timeout, unreachable).',
    ['result'],
  );
  readonly writesRefused = this.#counter(
    'shoal_writes_refused_total',
    'Local writes refused before they were tried, by reason (overloaded, disk).',
    ['reason'],
  );
  readonly automationRuns = this.#counter(
    'shoal_automation_runs_total',
    'Executor runs on this server, by node type and result (ok, error).',
    ['type', 'result'],
  );
  readonly automationFires = this.#counter(
    'shoal_automation_fires_total',
    'Triggers fired on this server, by node type.',
    ['type'],
  );
  readonly eventClients = new Gauge({
    name: 'shoal_event_clients',
    help: 'Clients connected to the event streams (SSE and WebSocket).',
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics ?? true) {
      // The event-loop monitor samples every 10 ms by default; once a second is plenty for an idle Pi.
      collectDefaultMetrics({
        register: this.registry,
        prefix: 'shoal_',
        eventLoopMonitoringPrecision: 1000,
      });
      // Its delay statistics (min, max, mean, ..., p99) count the sampling interval itself (Node's
      // monitor records the time between its timer's runs): at 1 s they read about 1 s with no lag
      // at all. Not exported; nodejs_eventloop_lag_seconds (measured at each scrape) stays, and the
      // loop's utilization says how busy it was in between.
      for (const stat of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'])
        this.registry.removeSingleMetric(`shoal_nodejs_eventloop_lag_${stat}_seconds`);
      let since = performance.eventLoopUtilization();
      this.gauge(
        'shoal_nodejs_eventloop_utilization_ratio',
        'Share of the time since the previous scrape the event loop was busy (0 to 1).',
        [],
        () => {
          const now = performance.eventLoopUtilization();
          const busy = performance.eventLoopUtilization(now, since).utilization;
          since = now;
          return [[{}, busy]];
        },
      );
    }
  }

  /** A counter in this peer's registry; its tallies report when it is collected. */
  #counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    const tallies = new Set<Tally>();
    const counter = new Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        for (const tally of tallies) tally.report();
      },
    });
    this.#tallies.set(counter as Counter<string>, tallies);
    return counter;
  }

  /** A tally of `counter` for these labels; `close` it when what it counts is gone. */
  tally<L extends string>(counter: Counter<L>, labels: Record<L, string>): Tally {
    const live = this.#tallies.get(counter as Counter<string>);
    if (!live) throw new Error('a tally of a counter this registry did not make');
    return new Tally(counter as Counter<string>, labels, live);
  }

  /** Adds a gauge whose values are read from live state at each scrape. */
  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    read: () => Iterable<[Partial<Record<L, string>>, number]>,
  ): void {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.set(labels, value);
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
