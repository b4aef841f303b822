/**
 * The Prometheus metrics of one peer, in a registry of its own (several peers may share a process
 * in tests). Components get this object and count; gauges of live state are read on scrape.
 */

import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();

  readonly beaconsSent = new Counter({
    name: 'shoal_beacons_sent_total',
    help: 'Beacons sent, by kind (hello, reply, bye).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly beaconsReceived = new Counter({
    name: 'shoal_beacons_received_total',
    help: 'Beacons accepted from other peers of this cluster.',
    registers: [this.registry],
  });
  readonly beaconsRejected = new Counter({
    name: 'shoal_beacons_rejected_total',
    help: 'Datagrams on the beacon port refused, by reason (size, magic, version, cluster, malformed, mac, clock, replay, rate, source).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly handshakesRejected = new Counter({
    name: 'shoal_handshakes_rejected_total',
    help: 'Peer links that failed the handshake, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly framesRejected = new Counter({
    name: 'shoal_frames_rejected_total',
    help: 'Frames on established links refused, by reason (auth closes the link; the others are dropped).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly linksOpened = new Counter({
    name: 'shoal_links_opened_total',
    help: 'Peer links that completed the handshake, by direction (inbound, outbound).',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly linksClosed = new Counter({
    name: 'shoal_links_closed_total',
    help: 'Established peer links closed, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly linkBytes = new Counter({
    name: 'shoal_link_bytes_total',
    help: 'Bytes on peer links (sealed frames), by peer and direction (tx, rx).',
    labelNames: ['peer', 'direction'] as const,
    registers: [this.registry],
  });
  readonly linkFrames = new Counter({
    name: 'shoal_link_frames_total',
    help: 'Frames on peer links, by peer and direction (tx, rx).',
    labelNames: ['peer', 'direction'] as const,
    registers: [this.registry],
  });
  readonly opsApplied = new Counter({
    name: 'shoal_replication_ops_applied_total',
    help: 'Ops applied to the store, by source (local writes, remote owners).',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly snapshots = new Counter({
    name: 'shoal_replication_snapshots_total',
    help: 'Owner snapshots sent and received (when the ops a peer lacked were compacted away).',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly forwardedWrites = new Counter({
    name: 'shoal_forwarded_writes_total',
    help: 'Writes forwarded from here to the owner of their node, by result (ok, refused, timeout, unreachable).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly writesRefused = new Counter({
    name: 'shoal_writes_refused_total',
    help: 'Local writes refused before they were tried, by reason (overloaded).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly automationRuns = new Counter({
    name: 'shoal_automation_runs_total',
    help: 'Executor runs on this server, by node type and result (ok, error).',
    labelNames: ['type', 'result'] as const,
    registers: [this.registry],
  });
  readonly automationFires = new Counter({
    name: 'shoal_automation_fires_total',
    help: 'Triggers fired on this server, by node type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly eventClients = new Gauge({
    name: 'shoal_event_clients',
    help: 'Clients connected to the event streams (SSE and WebSocket).',
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    // The event-loop monitor samples every 10 ms by default; once a second is plenty for an idle Pi.
    if (options.processMetrics ?? true) {
      collectDefaultMetrics({
        register: this.registry,
        prefix: 'shoal_',
        eventLoopMonitoringPrecision: 1000,
      });
    }
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
