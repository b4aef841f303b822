/**
 * The one configuration object of a shoal peer: every setting, its unit, its default and what it
 * costs to change it. Settings come from command-line flags, then SHOAL_* environment variables,
 * then a JSON or YAML config file, then DEFAULTS, in that order of precedence. Unknown keys and
 * out-of-range values are refused at start with the field named (SHOAL_BAD_CONFIG).
 */

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import Type, { type Static } from 'typebox';
import Compile from 'typebox/compile';
import { parse as parseYaml } from 'yaml';
import { ShoalError } from './errors.ts';

const LogLevel = Type.Union([
  Type.Literal('fatal'),
  Type.Literal('error'),
  Type.Literal('warn'),
  Type.Literal('info'),
  Type.Literal('debug'),
  Type.Literal('trace'),
  Type.Literal('silent'),
]);
const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const Ms = (min: number) => Type.Integer({ minimum: min, maximum: 7 * 24 * 3600 * 1000 });
const Fraction = Type.Number({ minimum: 0, maximum: 1 });

export const ConfigSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64 }),
    host: Type.String({ minLength: 1 }),
    port: Port,
    beaconPort: Type.Integer({ minimum: 1, maximum: 65535 }),
    beaconTargets: Type.Array(Type.String({ minLength: 1 })),
    dataDir: Type.String({ minLength: 1 }),
    secret: Type.String(),
    secretFile: Type.String(),
    peers: Type.Array(Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9._-]+):[0-9]{1,5}$' })),
    logLevel: LogLevel,
    beaconIntervalMs: Ms(50),
    beaconSettledIntervalMs: Ms(50),
    beaconJitter: Fraction,
    beaconClockWindowMs: Ms(1000),
    beaconRatePerSecond: Type.Number({ minimum: 0.1, maximum: 10000 }),
    beaconBurst: Type.Integer({ minimum: 1, maximum: 10000 }),
    beaconRateSources: Type.Integer({ minimum: 16, maximum: 1_000_000 }),
    replayCacheSize: Type.Integer({ minimum: 16, maximum: 1_000_000 }),
    multicast: Type.Boolean(),
    heartbeatIntervalMs: Ms(10),
    failureTimeoutMs: Ms(30),
    handshakeTimeoutMs: Ms(100),
    dialGraceMs: Ms(0),
    reconnectBaseMs: Ms(1),
    reconnectMaxMs: Ms(1),
    reconnectJitter: Fraction,
    peerTtlMs: Ms(1000),
    gossipDial: Type.Boolean(),
    maxFrameBytes: Type.Integer({ minimum: 16384, maximum: 256 * 1024 * 1024 }),
    maxPendingHandshakes: Type.Integer({ minimum: 1, maximum: 10000 }),
    linkSendBufferBytes: Type.Integer({ minimum: 65536, maximum: 1024 * 1024 * 1024 }),
    maxEventClients: Type.Integer({ minimum: 1, maximum: 100000 }),
    streamAuthTimeoutMs: Ms(100),
    streamUnauthenticatedPerAddress: Type.Integer({ minimum: 1, maximum: 100000 }),
    apiRatePerSecond: Type.Number({ minimum: 1, maximum: 1_000_000 }),
    apiBurst: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    apiRateSources: Type.Integer({ minimum: 16, maximum: 1_000_000 }),
    maxConnections: Type.Integer({ minimum: 16, maximum: 1_000_000 }),
    eventClientBufferBytes: Type.Integer({ minimum: 4096, maximum: 1024 * 1024 * 1024 }),
    maxBodyBytes: Type.Integer({ minimum: 1024, maximum: 256 * 1024 * 1024 }),
    maxNodeBytes: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024 }),
    opCacheBytes: Type.Integer({ minimum: 65536, maximum: 1024 * 1024 * 1024 }),
    maxPendingWriteBytes: Type.Integer({ minimum: 65536, maximum: 1024 * 1024 * 1024 }),
    maxJsonDepth: Type.Integer({ minimum: 1, maximum: 200 }),
    maxSeriesBytes: Type.Integer({ minimum: 1024, maximum: 1024 * 1024 * 1024 }),
    storeSync: Type.Union([Type.Literal('full'), Type.Literal('normal')]),
    forwardTimeoutMs: Ms(10),
    maxPendingWrites: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
    restartHoldMs: Ms(0),
    replicationBatchOps: Type.Integer({ minimum: 1, maximum: 100_000 }),
    replicationBatchMs: Type.Integer({ minimum: 0, maximum: 1000 }),
    replicaCommitMs: Type.Integer({ minimum: 0, maximum: 10_000 }),
    maxPendingOps: Type.Integer({ minimum: 0, maximum: 10_000_000 }),
    antiEntropyIntervalMs: Ms(100),
    opLogKeep: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
    tombstoneTtlMs: Ms(1000),
    seriesRetentionMs: Ms(1000),
    maintenanceIntervalMs: Ms(100),
    maxClockDriftMs: Ms(0),
    automationSettleMs: Ms(0),
    automationStartupMs: Ms(0),
    automationStateIntervalMs: Ms(0),
    automationMaxEventAgeMs: Ms(0),
    webhookBackoffMs: Ms(0),
  },
  { additionalProperties: false },
);

export type Config = Static<typeof ConfigSchema>;

/**
 * The defaults, tuned for a home or lab LAN of up to a few dozen servers on Wi-Fi or Ethernet.
 * Each line says what the setting does and what moving it costs.
 */
export const DEFAULTS: Config = {
  /** Display name shown to people; never used to tell peers apart (the id does that). */
  name: hostname(),
  /** Address the HTTP API, dashboard and peer links listen on. A loopback address keeps the peer
   * on this machine: beacons then go only to 127.255.255.255. */
  host: '0.0.0.0',
  /** TCP port of the HTTP API, the dashboard and peer links (WebSocket at /mesh/v1). 0 picks a
   * free port, which the peer then advertises. */
  port: 7420,
  /** UDP port beacons are sent to and heard on. Every peer of a LAN must use the same one; the
   * socket is opened with address reuse so several peers on one host all hear each other. */
  beaconPort: 7421,
  /** Where beacons are sent. Empty: the subnet broadcast address of every up, non-loopback IPv4
   * interface plus the multicast group 239.255.74.20 (TTL 1), or only 127.255.255.255 when
   * `host` is a loopback address or no other interface is up. Given: exactly these addresses. */
  beaconTargets: [],
  /** Where the peer keeps its identity, admin key and (later) its data. */
  dataDir: './shoal-data',
  /** The cluster secret. Peers trust each other only through it; it never crosses the wire.
   * Empty: read `secretFile`, then `<dataDir>/secret` (written by `shoal init`). */
  secret: '',
  /** A file holding the cluster secret (surrounding white space is ignored). */
  secretFile: '',
  /** Servers beacons cannot reach (other subnets, VLANs, containers), as HOST:PORT. Dialled at
   * start and redialled with backoff for as long as the peer runs. One is enough to join: the
   * mesh tells the peer about all the others. */
  peers: [],
  /** pino log level. */
  logLevel: 'info',

  /** Milliseconds between beacons. A peer also beacons at start and answers unknown senders at
   * once, so this bounds how long a missed start beacon delays discovery. Lower costs one small
   * datagram per interface per interval. */
  beaconIntervalMs: 2000,
  /** The time between beacons while some peer is connected and every peer this one knows is
   * connected (directly or through others) or has left: then there is nothing to find but another
   * mesh on the same LAN, and each beacon costs every peer that hears it. A peer going missing or
   * a new one appearing brings back `beaconIntervalMs` at once; newcomers beacon at start and are
   * answered anyway. */
  beaconSettledIntervalMs: 20_000,
  /** Each interval is shortened or lengthened by up to this fraction at random, so peers started
   * together do not beacon in lock step. */
  beaconJitter: 0.25,
  /** A beacon whose timestamp is further than this from local time is refused (reason "clock").
   * It bounds how long a captured beacon could be replayed; the replay cache covers the window.
   * Servers' clocks must agree within it (NTP does that easily). */
  beaconClockWindowMs: 60_000,
  /** Beacons accepted per second from one source (address and port: every peer sends from a port
   * of its own, so peers sharing a host are counted apart), with `beaconBurst`; the rest are
   * dropped (reason "rate") before any cryptography is done on them. */
  beaconRatePerSecond: 20,
  /** Token-bucket burst for `beaconRatePerSecond`. */
  beaconBurst: 40,
  /** Sources the beacon rate limit tracks at once; the least recently heard is forgotten. */
  beaconRateSources: 4096,
  /** How many recently seen beacon nonces are remembered to refuse replays (reason "replay").
   * Must exceed the beacons a whole mesh sends within `beaconClockWindowMs` (25 peers at one
   * beacon per 2 s for 60 s is 750). */
  replayCacheSize: 8192,
  /** Also join and beacon to the multicast group when `beaconTargets` is empty. */
  multicast: true,

  /** Milliseconds between heartbeats on each link; each carries a timestamp for the RTT. Costs
   * two small frames per interval per link, which is most of what an idle peer spends. */
  heartbeatIntervalMs: 1000,
  /** A link on which nothing arrived for this long is declared dead and the peer disconnected.
   * Lower detects an unplugged server sooner but risks flapping on a congested Wi-Fi; keep it at
   * least three heartbeat intervals. A peer that shuts down cleanly is marked at once anyway. */
  failureTimeoutMs: 3000,
  /** A link that has not completed the mutual challenge-response within this is closed. */
  handshakeTimeoutMs: 5000,
  /** When two peers learn of each other at once, the one with the lower id dials at once and the
   * other waits this long for that link before dialling itself. */
  dialGraceMs: 1000,
  /** First reconnect delay after a link is lost; it doubles per failed attempt. */
  reconnectBaseMs: 250,
  /** Upper bound of the reconnect delay. A beacon from the lost peer triggers a dial at once
   * regardless, so this only matters for peers known by static address or gossip. */
  reconnectMaxMs: 15_000,
  /** Each reconnect delay is varied by up to this fraction at random, so a mesh that lost a switch
   * does not redial in lock step. */
  reconnectJitter: 0.3,
  /** A peer that has been disconnected this long is forgotten (static peers never are). */
  peerTtlMs: 24 * 3600 * 1000,
  /** Dial peers learned through other peers (membership gossip), making a full mesh where the
   * network allows it. Off: only beacons and static peers are dialled, and the rest is reached
   * through relays. */
  gossipDial: true,

  /** Largest WebSocket message accepted on a peer link or client stream, in bytes. Larger ones
   * close the link (reason "too_large"). */
  maxFrameBytes: 4 * 1024 * 1024,
  /** Inbound links that may be in their handshake at once; more are refused at once. */
  maxPendingHandshakes: 64,
  /** Bytes queued for sending on one link beyond which the link is considered congested and
   * senders are held back (backpressure). */
  linkSendBufferBytes: 8 * 1024 * 1024,
  /** Clients of the event streams (SSE and WebSocket, writers with ?types=none too) at once; more get 503. */
  maxEventClients: 256,
  /** How long a client of /api/v1/stream without an Authorization header may take to send its
   * auth message before it is closed (4401). Until then it holds a slot of its own (at most
   * maxEventClients such), not one of the authenticated clients'. */
  streamAuthTimeoutMs: 5000,
  /** Streams still to authenticate from one client address at once; more are closed (1013), so
   * one address cannot take every such slot and lock out the browsers that authenticate so. */
  streamUnauthenticatedPerAddress: 16,
  /** HTTP requests accepted per second from one client address, with `apiBurst`; more get 429
   * SHOAL_RATE_LIMITED (with Retry-After) before any other work. Writes over the client stream
   * are messages, not requests: they meet maxPendingWrites instead. */
  apiRatePerSecond: 500,
  /** Token-bucket burst for `apiRatePerSecond`. */
  apiBurst: 1000,
  /** Client addresses the API rate limit tracks at once; the least recently heard is forgotten. */
  apiRateSources: 4096,
  /** Open TCP connections to the HTTP port (API, dashboard, event streams, peer links) at once;
   * more are closed as they come. Each holds a file descriptor. */
  maxConnections: 1024,
  /** Bytes queued for one event-stream client beyond which the client is too slow and is
   * disconnected (it reconnects and catches up) rather than buffering without bound. */
  eventClientBufferBytes: 4 * 1024 * 1024,
  /** Largest HTTP request body accepted, in bytes (413 above it). */
  maxBodyBytes: 1024 * 1024,
  /** Largest node state (name, meta and value as JSON), in bytes (413 above it). Every op of a
   * node carries its whole state; a link message holds at least one op, so this stays below half
   * of maxFrameBytes. */
  maxNodeBytes: 256 * 1024,
  /** The newest ops of an owner this server sends on (its own; others' when it relays) are kept
   * in memory, so sending them reads no disk: this many bytes of them at most, per owner. */
  opCacheBytes: 4 * 1024 * 1024,
  /** Bytes (values and meta) of local writes waiting to be answered beyond which new ones get
   * 503 SHOAL_OVERLOADED, as with maxPendingWrites: a burst of large values is held back, not
   * buffered until the heap is full. */
  maxPendingWriteBytes: 64 * 1024 * 1024,
  /** How deep a node's meta or value, or a trigger's payload, may nest arrays and objects (400
   * deeper): JSON.stringify recurses, and a value thousands of levels deep cannot be written. */
  maxJsonDepth: 32,
  /** Values (as JSON) in one page of a data point's series, in bytes at most; a page that stops
   * there says `more`, and the next starts after its last point. */
  maxSeriesBytes: 8 * 1024 * 1024,

  /** When a local write is durable: "full" fsyncs every commit before the API answers and
   * before the write goes to any peer, so an acknowledged write survives a power cut; "normal"
   * survives a crash of the process but may lose the last commits in a power cut, for less wear
   * on an SD card. The fsync runs in a worker thread while the peer goes on (an SD card's fsync
   * can take tens of ms), and one fsync covers every commit made before it started; reads on
   * this server may show a write during its fsync. */
  storeSync: 'full',
  /** A write forwarded to its node's owner that is not answered within this gets 503
   * (SHOAL_OWNER_UNREACHABLE); it may still have been applied, and retrying is safe. */
  forwardTimeoutMs: 5000,
  /** Local writes waiting for their commit or its fsync beyond which new ones get 503 (SHOAL_OVERLOADED):
   * the backpressure writers feel instead of silent loss. */
  maxPendingWrites: 10_000,
  /** A server that has been part of a mesh holds its local writes after a start (they wait, up
   * to `maxPendingWrites`) until the mesh has formed around it, every neighbour has told it how
   * far its own changes go, and it has them all, at most this long: a server put back on an older
   * copy of its data must get its later changes back before it numbers new ones, or the mesh
   * would take the new ones for those. Usually the hold ends as soon as the links are up; it
   * lasts this long when some server is reached only through others. Enough for one lost start
   * beacon (`beaconIntervalMs`) and a handshake. A server that has never met another holds
   * nothing. 0: no hold, at the risk above. */
  restartHoldMs: 10_000,
  /** Ops per replication message. Larger batches mean fewer frames under load and bigger ones. */
  replicationBatchOps: 1000,
  /** After sending ops, a peer waits this many milliseconds before it sends more, so ops
   * committed meanwhile travel together. 0 (the default) sends every commit on its own: a
   * commit already carries every write that came in while the last one was made, so under load
   * frames carry many writes all the same (a mesh of 10 sustained 8,000 writes/s either way).
   * At 1000 writes/s in a mesh of 10, a 2 ms wait held each write 1 to 2 ms: on all replicas
   * p50 3.0 ms with it, 1.2 ms without, p99 5.8 to 7.5 ms and 3.7 to 4.4 ms, for 10 to 15 %
   * more CPU per write (runs of each, taken in turn). */
  replicationBatchMs: 0,
  /** Ops replicated from other servers are applied, shown and passed on at once, but committed
   * to disk together this many milliseconds later: each commit writes every page it touched, so
   * at 50 replicated writes/s one commit each wrote ~20 KB per write, one every 250 ms ~5 KB (an
   * SD card's wear). A crash loses at most these, which the mesh still has and sends again.
   * 0 commits each batch. */
  replicaCommitMs: 250,
  /** Ops that arrived ahead of a missing earlier op of their owner and wait for it, at most;
   * beyond this they are dropped and fetched again later. */
  maxPendingOps: 100_000,
  /** Every this often each peer swaps version vectors with its neighbours, a safety net behind
   * the swap done on every new link and every change of routes. */
  antiEntropyIntervalMs: 30_000,
  /** Ops of each owner kept in the log; a peer further behind gets a snapshot of the owner's
   * nodes instead. More costs disk; fewer means more snapshots after long absences. */
  opLogKeep: 100_000,
  /** A deleted node's tombstone is kept at least this long (and until its op left the log). */
  tombstoneTtlMs: 7 * 24 * 3600 * 1000,
  /** Values of a data point are kept this long unless its meta.retentionMs says otherwise. */
  seriesRetentionMs: 7 * 24 * 3600 * 1000,
  /** How often the log is compacted, tombstones and old series values collected, and orphaned
   * nodes of this server deleted. */
  maintenanceIntervalMs: 60_000,
  /** Timestamps from another server further ahead of local time than this are not followed, so
   * one wrong clock cannot drag the mesh's timestamps into the future. */
  maxClockDriftMs: 60_000,

  /** A job with placement "any" that this server newly wins starts only after the view of live
   * servers has been stable this long, so the server that lost it has stopped first (fencing). */
  automationSettleMs: 1000,
  /** After a start, jobs with placement "any" wait this long, so discovery finds the others
   * before this server decides it should run everything. */
  automationStartupMs: 5000,
  /** Run state of a job is told to the mesh at most this often (fires always go at once). */
  automationStateIntervalMs: 250,
  /** Values older than this when they arrive (catching up after a partition) fire no trigger. */
  automationMaxEventAgeMs: 30_000,
  /** First retry delay of an OutgoingWebHook; it doubles per retry. */
  webhookBackoffMs: 500,
};

/** Shorter timings for tests and benchmarks on loopback; everything else stays at DEFAULTS. */
export function testDefaults(): Partial<Config> {
  return {
    host: '127.0.0.1',
    port: 0,
    beaconTargets: ['127.255.255.255'],
    beaconIntervalMs: 500,
    beaconSettledIntervalMs: 2000,
    heartbeatIntervalMs: 100,
    failureTimeoutMs: 600,
    dialGraceMs: 200,
    reconnectBaseMs: 50,
    reconnectMaxMs: 1000,
    handshakeTimeoutMs: 2000,
    automationSettleMs: 200,
    automationStartupMs: 1000,
    webhookBackoffMs: 100,
    logLevel: 'warn',
  };
}

const checkConfig = Compile(ConfigSchema);

/** Environment variables read by `loadConfig`, and the field each sets. */
export const ENV_VARS = {
  SHOAL_NAME: 'name',
  SHOAL_HOST: 'host',
  SHOAL_PORT: 'port',
  SHOAL_BEACON_PORT: 'beaconPort',
  SHOAL_BEACON_TARGETS: 'beaconTargets',
  SHOAL_DATA: 'dataDir',
  SHOAL_SECRET: 'secret',
  SHOAL_SECRET_FILE: 'secretFile',
  SHOAL_PEERS: 'peers',
  SHOAL_LOG_LEVEL: 'logLevel',
} as const satisfies Record<string, keyof Config>;

export interface ConfigSources {
  /** Values from command-line flags, already named as Config fields. */
  flags?: Partial<Record<keyof Config, unknown>>;
  /** The process environment. */
  env?: Record<string, string | undefined>;
  /** A JSON or YAML config file (flag `--config`). */
  file?: string;
}

/** Builds and validates the Config from its sources: flags > env > file > defaults. */
export function loadConfig(sources: ConfigSources = {}): Config {
  const fromFile = sources.file ? readConfigFile(sources.file) : {};
  const fromEnv = envToConfig(sources.env ?? {});
  const fromFlags = Object.fromEntries(
    Object.entries(sources.flags ?? {}).filter(([, v]) => v !== undefined),
  );
  const merged: Record<string, unknown> = { ...DEFAULTS, ...fromFile, ...fromEnv, ...fromFlags };
  return validateConfig(merged);
}

/** Checks a whole config object, naming the first field that is wrong. */
export function validateConfig(value: Record<string, unknown>): Config {
  if (!checkConfig.Check(value)) {
    // An unknown key also fails its own (boolean false) schema, reported first as "schema is
    // false"; the additionalProperties error names it as an unknown setting.
    const errors = checkConfig.Errors(value);
    const first = errors.find((e) => e.keyword === 'additionalProperties') ?? errors[0];
    const field = first ? fieldOf(first.instancePath, first.params) : 'config';
    const message = first?.message ?? 'is invalid';
    throw new ShoalError('SHOAL_BAD_CONFIG', `config field "${field}": ${message}`);
  }
  const config = value as Config;
  if (config.failureTimeoutMs < 2 * config.heartbeatIntervalMs) {
    throw new ShoalError(
      'SHOAL_BAD_CONFIG',
      'config field "failureTimeoutMs": must be at least twice heartbeatIntervalMs',
    );
  }
  if (config.reconnectMaxMs < config.reconnectBaseMs) {
    throw new ShoalError(
      'SHOAL_BAD_CONFIG',
      'config field "reconnectMaxMs": must not be below reconnectBaseMs',
    );
  }
  if (config.maxNodeBytes > config.maxFrameBytes / 2 - 4096) {
    throw new ShoalError(
      'SHOAL_BAD_CONFIG',
      'config field "maxNodeBytes": must be below half of maxFrameBytes (less 4096), so that an op fits in a link message',
    );
  }
  // Beacons go to IPv4 addresses (the beacon sockets are IPv4): a name would cost a DNS lookup per
  // beacon, and could not be a broadcast.
  const notAddress = config.beaconTargets.find((target) => isIP(target) !== 4);
  if (notAddress !== undefined) {
    throw new ShoalError(
      'SHOAL_BAD_CONFIG',
      `config field "beaconTargets": "${notAddress}" is not an IPv4 address (e.g. 192.168.1.255)`,
    );
  }
  if (config.maxBodyBytes > config.maxFrameBytes - 4096) {
    throw new ShoalError(
      'SHOAL_BAD_CONFIG',
      'config field "maxBodyBytes": must be below maxFrameBytes (less 4096), so that a write taken here can be forwarded to its owner',
    );
  }
  return config;
}

function fieldOf(instancePath: string, params: object): string {
  const path = instancePath.replace(/^\//, '').replaceAll('/', '.');
  if ('additionalProperties' in params) {
    const extra = (params as { additionalProperties: string[] }).additionalProperties;
    return `${[path, extra[0]].filter(Boolean).join('.')} (unknown setting)`;
  }
  if ('requiredProperties' in params) {
    const missing = (params as { requiredProperties: string[] }).requiredProperties;
    return [path, missing[0]].filter(Boolean).join('.');
  }
  return path || 'config';
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ShoalError('SHOAL_BAD_CONFIG', `config file ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ShoalError('SHOAL_BAD_CONFIG', `config file ${file}: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ShoalError('SHOAL_BAD_CONFIG', `config file ${file}: must hold an object of settings`);
  }
  return parsed as Record<string, unknown>;
}

const LIST_FIELDS = new Set<keyof Config>(['beaconTargets', 'peers']);
const INT_FIELDS = new Set<keyof Config>(['port', 'beaconPort']);

function envToConfig(env: Record<string, string | undefined>): Partial<Record<keyof Config, unknown>> {
  const out: Partial<Record<keyof Config, unknown>> = {};
  for (const [variable, field] of Object.entries(ENV_VARS) as [string, keyof Config][]) {
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    out[field] = parseSetting(field, raw, variable);
  }
  return out;
}

/** Parses one setting given as text (a flag or an environment variable). */
export function parseSetting(field: keyof Config, raw: string, source: string): unknown {
  if (LIST_FIELDS.has(field)) {
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }
  if (INT_FIELDS.has(field)) {
    if (!/^\d+$/.test(raw.trim())) {
      throw new ShoalError('SHOAL_BAD_CONFIG', `${source}: "${raw}" is not a port number`);
    }
    return Number(raw);
  }
  return raw;
}

/** Splits "HOST:PORT" (or "[v6]:PORT") into its parts. */
export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port < 1 || port > 65535) {
    throw new ShoalError('SHOAL_BAD_CONFIG', `peer "${value}": must be HOST:PORT`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}
