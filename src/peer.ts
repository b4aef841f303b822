/**
 * The composition root: the one place that builds a peer's parts from a Config and wires them
 * together. Parts start in order and stop in reverse; `stop()` leaves the mesh gracefully (bye on
 * every link and in a beacon) so the other peers know at once.
 */

import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ApiKeys } from './api/auth.ts';
import { buildApi } from './api/server.ts';
import { AutomationEngine } from './automation/engine.ts';
import { automationProblem } from './automation/validate.ts';
import { type Clock, encodeHlc, HybridClock, type Random, systemClock } from './clock.ts';
import { type Config, parseHostPort } from './config.ts';
import { deriveClusterKeys, secretWeakness } from './crypto.ts';
import { DataDirLock } from './data-lock.ts';
import { Discovery } from './discovery/discovery.ts';
import { beaconTargets, isLoopback, MULTICAST_GROUP } from './discovery/targets.ts';
import { type DatagramTransport, ipv4Addresses, UdpTransport } from './discovery/transport.ts';
import { ShoalError } from './errors.ts';
import { EventBus } from './events.ts';
import {
  adminKey,
  hardwareModel,
  type Identity,
  osDescription,
  platformName,
  type ServerMetadata,
  startIdentity,
  VERSION,
} from './identity.ts';
import { createLogger, type Logger } from './log.ts';
import { Mesh } from './mesh/mesh.ts';
import type { PeerView } from './mesh/peer-table.ts';
import { Metrics } from './metrics.ts';
import { NodeService } from './replication/node-service.ts';
import { Replicator } from './replication/replicator.ts';
import { Retirements } from './replication/retirement.ts';
import { Store } from './store/store.ts';

export interface PeerOptions {
  log?: Logger;
  clock?: Clock;
  random?: Random;
  /** The beacon transport; a real UDP one by default. */
  transport?: DatagramTransport;
}

export interface StartedPeer {
  id: string;
  port: number;
  /** Set when this start made the admin key: it is shown to the user once. */
  newAdminKey: string | undefined;
}

export class Peer {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics = new Metrics();
  readonly events = new EventBus();
  readonly #options: PeerOptions;
  #identity: Identity | undefined;
  #mesh: Mesh | undefined;
  #discovery: Discovery | undefined;
  #api: FastifyInstance | undefined;
  #port = 0;
  #startedAt = 0;
  // Read once: metadata() is called for every membership record the peer sends.
  #model = 'unknown';
  #os = osDescription();
  #platform = platformName();
  #stopping: Promise<void> | undefined;
  #store: Store | undefined;
  /** Held from start to stop: one peer per data directory. */
  #lock: DataDirLock | undefined;
  #replicator: Replicator | undefined;
  #nodes: NodeService | undefined;
  #engine: AutomationEngine | undefined;
  #maintenance: ReturnType<typeof setInterval> | undefined;
  /** What `#savePeers` last wrote, to write only when it changed. */
  #savedPeers = '';

  constructor(config: Config, options: PeerOptions = {}) {
    this.config = config;
    this.#options = options;
    this.log = options.log ?? createLogger(config.logLevel);
  }

  get id(): string {
    return this.#required(this.#identity).id;
  }

  get port(): number {
    return this.#port;
  }

  peers(): PeerView[] {
    return this.#required(this.#mesh).peers();
  }

  metadata(): ServerMetadata {
    const c = this.config;
    return {
      id: this.id,
      name: c.name,
      port: this.#port,
      model: this.#model,
      version: VERSION,
      os: this.#os,
      platform: this.#platform,
      settings: {
        beaconPort: c.beaconPort,
        beaconIntervalMs: c.beaconIntervalMs,
        heartbeatIntervalMs: c.heartbeatIntervalMs,
        failureTimeoutMs: c.failureTimeoutMs,
        multicast: c.multicast,
        gossipDial: c.gossipDial,
        generation: this.#identity?.generation,
      },
    };
  }

  async start(): Promise<StartedPeer> {
    const config = this.config;
    const clock = this.#options.clock ?? systemClock;
    const random = this.#options.random ?? Math.random;
    const secret = resolveSecret(config);
    const weakness = secretWeakness(secret);
    if (weakness) this.log.warn(`WARNING: ${weakness}`);
    const staticPeers = config.peers.map(parseHostPort);

    this.#lock = DataDirLock.take(config.dataDir);
    this.#identity = startIdentity(config.dataDir);
    const admin = adminKey(config.dataDir);
    const clusterKeys = deriveClusterKeys(secret);
    this.#model = hardwareModel();
    this.#startedAt = Date.now();

    const mesh = new Mesh(
      {
        clock,
        random,
        log: this.log,
        metrics: this.metrics,
        keys: clusterKeys,
        identity: this.#identity,
        metadata: () => this.metadata(),
        addresses: () => this.#advertisedAddresses(),
      },
      { ...config, staticPeers, sendBufferBytes: config.linkSendBufferBytes },
    );
    mesh.table.onChange((peer) => this.events.publish({ type: 'peer', peer }));
    this.#mesh = mesh;

    const store = new Store(join(config.dataDir, 'shoal.db'));
    this.#store = store;
    const keys = new ApiKeys(admin.key, store, admin.at);
    const replicator: Replicator = new Replicator(
      {
        selfId: this.#identity.id,
        store,
        mesh,
        clock,
        hlc: new HybridClock(clock, config.maxClockDriftMs),
        events: this.events,
        metrics: this.metrics,
        log: this.log,
        retired: (owner) => retirements.has(owner),
      },
      {
        forwardTimeoutMs: config.forwardTimeoutMs,
        maxPendingWrites: config.maxPendingWrites,
        restartHoldMs: config.restartHoldMs,
        batchOps: config.replicationBatchOps,
        batchBytes: Math.floor(config.maxFrameBytes / 2),
        maxJsonDepth: config.maxJsonDepth,
        maxNodeBytes: config.maxNodeBytes,
        opCacheBytes: config.opCacheBytes,
        maxPendingWriteBytes: config.maxPendingWriteBytes,
        batchMs: config.replicationBatchMs,
        replicaCommitMs: config.replicaCommitMs,
        maxPendingOps: config.maxPendingOps,
        antiEntropyIntervalMs: config.antiEntropyIntervalMs,
        localSync: config.storeSync === 'full' ? 'FULL' : 'NORMAL',
      },
    );
    this.#replicator = replicator;
    const retirements: Retirements = new Retirements({
      selfId: this.#identity.id,
      store,
      mesh,
      replication: replicator,
      events: this.events,
      metrics: this.metrics,
      log: this.log,
      now: () => clock.now(),
      stopBeacons: () => {
        this.#discovery?.stop().catch((err) => this.log.debug({ err }, 'beacons did not stop cleanly'));
      },
    });
    const nodes = new NodeService({
      selfId: this.#identity.id,
      store,
      replicator,
      knows: (id) => mesh.table.get(id) !== undefined,
      maxSeriesBytes: config.maxSeriesBytes,
    });
    this.#nodes = nodes;
    const engine = new AutomationEngine(
      {
        selfId: this.#identity.id,
        store,
        setValue: (id, value) => nodes.setValue(id, value),
        events: this.events,
        clock,
        log: this.log,
        metrics: this.metrics,
        membership: () => {
          const peers = mesh.peers();
          return {
            live: peers.filter((p) => p.state === 'connected').map((p) => p.id),
            known: peers.length + 1,
          };
        },
        flood: (message, from) => mesh.flood(message, message.origin, from),
      },
      {
        settleMs: config.automationSettleMs,
        startupMs: config.automationStartupMs,
        stateIntervalMs: config.automationStateIntervalMs,
        maxEventAgeMs: config.automationMaxEventAgeMs,
        webhookBackoffMs: config.webhookBackoffMs,
      },
    );
    this.#engine = engine;
    nodes.hooks = {
      check: (node) =>
        automationProblem(
          node,
          (id) => store.visibleNode(id),
          () => store.nodes(),
        ),
      decorate: (node) => {
        const state = engine.stateOf(node.id);
        return state ? { ...node, state } : node;
      },
    };
    // Replication, retirement and automation share the links. A new link hears of retired
    // servers first, so that nothing of theirs is sent over it.
    mesh.application = {
      linkUp: (peer) => {
        retirements.linkUp(peer);
        replicator.linkUp(peer);
      },
      linkDown: (peer) => replicator.linkDown(peer),
      routesChanged: () => replicator.routesChanged(),
      message: (peer, message) => {
        if (message.t === 'auto') engine.receive(peer, message);
        else if (message.t === 'retired') retirements.receive(peer, message.records);
        else replicator.message(peer, message);
      },
    };

    const api = await buildApi(
      {
        log: this.log,
        metrics: this.metrics,
        events: this.events,
        keys,
        server: () => this.metadata(),
        peers: () => mesh.peers(),
        retire: (id) => retirements.retire(id),
        retired: () => retirements.list(),
        startedAt: this.#startedAt,
        acceptLink: (ws, address) => mesh.accept(ws, address),
        nodes,
        fire: (id, payload) => engine.fire(id, payload),
        graph: () => mesh.graph(),
      },
      config,
    );
    this.#api = api;
    try {
      await api.listen({
        host: config.host,
        port: config.port,
        listenTextResolver: (address) => `HTTP API listening on ${address}`,
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') {
        throw new ShoalError(
          'SHOAL_PORT_IN_USE',
          `port ${config.port} on ${config.host} is already in use (--port)`,
        );
      }
      throw new ShoalError(
        'SHOAL_BAD_CONFIG',
        `cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`,
      );
    }
    const address = api.server.address();
    this.#port = typeof address === 'object' && address ? address.port : config.port;

    const loopback = isLoopback(config.host);
    const useMulticast = config.multicast && config.beaconTargets.length === 0 && !loopback;
    const transport =
      this.#options.transport ??
      new UdpTransport({
        beaconPort: config.beaconPort,
        sendFrom: loopback ? config.host : '0.0.0.0',
        ...(useMulticast ? { multicastGroup: MULTICAST_GROUP } : {}),
        onError: (err) => this.log.debug({ err: err.message }, 'beacon socket error'),
      });
    const identity = this.#identity;
    this.#discovery = new Discovery(
      {
        transport,
        clock,
        random,
        keys: clusterKeys,
        metrics: this.metrics,
        log: this.log,
        self: () => ({
          id: identity.id,
          generation: identity.generation,
          port: this.#port,
          host: config.host === '0.0.0.0' ? '' : config.host,
          name: config.name,
          version: VERSION,
        }),
        settled: () => mesh.table.settled(),
        isKnown: (id, generation) => mesh.table.knows(id, generation),
        onBeacon: (beacon) => mesh.heardBeacon(beacon),
      },
      {
        beaconPort: config.beaconPort,
        intervalMs: config.beaconIntervalMs,
        settledIntervalMs: config.beaconSettledIntervalMs,
        jitter: config.beaconJitter,
        clockWindowMs: config.beaconClockWindowMs,
        ratePerSecond: config.beaconRatePerSecond,
        burst: config.beaconBurst,
        rateSources: config.beaconRateSources,
        replayCacheSize: config.replayCacheSize,
        targets: () => beaconTargets(config, networkInterfaces()),
        acceptSource: (address) => !loopback || isLoopback(address),
      },
    );
    // A peer going missing (or a new one) ends a settled mesh's slow beacons at once.
    mesh.table.onChange(() => this.#discovery?.unsettled());
    replicator.start();
    if (!replicator.holdingWrites) await this.#publishServerNode();
    else {
      // After a start that holds local writes (see replicator.ts), the Server node is compared
      // with what the mesh holds of it, so only once the hold is over.
      replicator
        .whenWritable()
        .then(() => this.#publishServerNode())
        .catch((err) => this.log.warn({ err }, 'could not refresh the Server node of this server'));
    }
    engine.start();
    this.#maintenance = setInterval(() => this.#maintain(), config.maintenanceIntervalMs);
    this.#maintenance.unref();
    // The peers known before this start are listed, and dialled, until heard from again.
    for (const saved of store.knownPeers()) {
      if (!retirements.has(saved.record.id)) mesh.table.remember(saved);
    }
    mesh.start();
    try {
      await this.#discovery.start();
    } catch (err) {
      await this.stop();
      throw new ShoalError(
        'SHOAL_PORT_IN_USE',
        `beacon port ${config.beaconPort}: ${(err as Error).message}`,
      );
    }
    this.log.info(
      {
        id: this.id,
        name: config.name,
        host: config.host,
        port: this.#port,
        generation: identity.generation,
      },
      'shoal peer started',
    );
    // Written only now, when it is about to be shown: a start that failed left none unseen.
    admin.save();
    return { id: this.id, port: this.#port, newAdminKey: admin.created ? admin.key : undefined };
  }

  /** Leaves the mesh and stops everything; safe to call twice. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      clearInterval(this.#maintenance);
      this.#savePeers(true);
      this.#mesh?.stop();
      await this.#discovery?.stop();
      await this.#api?.close();
      this.#engine?.stop();
      this.#replicator?.stop();
      this.#store?.close();
      this.#lock?.release();
      this.log.info('shoal peer stopped');
    })();
    return this.#stopping;
  }

  /** The node operations (reads here, writes at their owners). */
  get nodes(): NodeService {
    return this.#required(this.#nodes);
  }

  /** Makes or refreshes this server's own Server node. */
  async #publishServerNode(): Promise<void> {
    const meta = this.metadata();
    const state = {
      name: meta.name,
      meta: {
        port: meta.port,
        model: meta.model,
        version: meta.version,
        os: meta.os,
        platform: meta.platform,
      },
    };
    const existing = this.#store!.node(meta.id);
    const replicator = this.#replicator!;
    if (!existing || existing.deleted) {
      await replicator.write(meta.id, {
        kind: 'create',
        node: { id: meta.id, type: 'Server', parent: null, ...state },
      });
    } else if (existing.name !== state.name || JSON.stringify(existing.meta) !== JSON.stringify(state.meta)) {
      await replicator.write(meta.id, { kind: 'update', id: meta.id, ...state });
    }
  }

  /** Compacts the log, collects old tombstones and series values, and finishes cascades. */
  #maintain(): void {
    const c = this.config;
    const store = this.#store!;
    try {
      const now = Date.now();
      store.compactLog(c.opLogKeep);
      store.collectTombstones(encodeHlc(now - c.tombstoneTtlMs, 0));
      store.pruneSeries(now, c.seriesRetentionMs);
      this.#replicator!.sweepOrphans();
    } catch (err) {
      this.log.error({ err }, 'maintenance failed');
    }
    this.#savePeers();
  }

  /**
   * Saves the peer table for the next start, when it changed: peers came or went, or an hour
   * passed since one was last heard from (a write per hour, not per heartbeat, on an SD card);
   * at a stop, as it is.
   */
  #savePeers(force = false): void {
    const mesh = this.#mesh;
    const store = this.#store;
    if (!mesh || !store) return;
    const peers = mesh.table.saved();
    const signature = JSON.stringify(
      peers.map((p) => ({ ...p, lastSeen: Math.floor(p.lastSeen / 3_600_000) })),
    );
    if (signature === this.#savedPeers && !force) return;
    try {
      store.saveKnownPeers(peers);
      this.#savedPeers = signature;
    } catch (err) {
      this.log.warn({ err }, 'could not save the known peers');
    }
  }

  #advertisedAddresses(): string[] {
    const host = this.config.host;
    if (host !== '0.0.0.0' && host !== '::') return [host];
    return ipv4Addresses();
  }

  #required<T>(value: T | undefined): T {
    if (value === undefined) throw new Error('the peer has not been started');
    return value;
  }
}

/** The cluster secret: the setting, else `secretFile`, else `<dataDir>/secret` from `shoal init`. */
export function resolveSecret(config: Config): string {
  if (config.secret) return config.secret;
  const file = config.secretFile || join(config.dataDir, 'secret');
  try {
    const secret = readFileSync(file, 'utf8').trim();
    if (secret) return secret;
  } catch (err) {
    if (config.secretFile) {
      throw new ShoalError('SHOAL_BAD_CONFIG', `secret file ${file}: ${(err as Error).message}`);
    }
  }
  throw new ShoalError(
    'SHOAL_NO_SECRET',
    'no cluster secret: run `shoal init` to make one, then pass it with --secret, SHOAL_SECRET or --secret-file',
  );
}
