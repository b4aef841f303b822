/**
 * Replication of the node tree across the mesh.
 *
 * Every node has one owner, and only the owner changes it: a write anywhere else is forwarded,
 * hop by hop along the mesh's routes, to the owner, which answers once its commit is durable.
 * The owner turns each change into an op with the next number of its own sequence and an HLC
 * stamp, and stores op and new node state in one transaction (see store.ts).
 *
 * Propagation is pull-from-log: for every direct link and every owner, a cursor says how far that
 * peer is known to have the owner's ops. Whenever there is something new, the ops past each
 * cursor are read from the log and sent in batches; a congested link simply lags and catches up
 * from the log later, so nothing is dropped and nothing is buffered without bound. When the ops a
 * peer lacks were compacted away, it gets a snapshot of the owner's nodes instead, and then asks
 * for the readings of the owner's data points the snapshot could not carry (`rdq`, answered a
 * page at a time with `rd`: see "Readings a snapshot could not carry" below).
 *
 * Who sends what: a peer sends the ops of owner O to a neighbour N when it is O itself, or when
 * N is not directly linked to O (so N cannot have them first-hand). In a full mesh every op
 * travels one hop; in a chain A-B-C, B relays between A and C.
 *
 * Anti-entropy: the two ends of a new link swap version vectors, and each sets its cursors for
 * the other to what the other has. The same swap runs with every neighbour whenever routes change
 * and on a slow timer, so a peer back from a partition gets exactly what it missed.
 *
 * An owner on an older copy of its data (a backup put back after its disk died) lacks ops of its
 * own that the mesh holds; numbering on from its copy would reuse their sequence numbers, and
 * every replica would drop the new ops as duplicates. Its neighbours see that in its version
 * vector and send it its own ops, as to any peer that lacks an owner's ops; until it has them it
 * takes no local writes, then numbers on after them. As it cannot know it is behind before its
 * neighbours' vectors arrive, and any one neighbour may be behind too, a server that has been in
 * a mesh holds its local writes after a start until the mesh has formed around it (every peer
 * known to be up is linked directly: `MeshPort.formed`), every neighbour's vector has come, and
 * it has its ops back; `restartHoldMs` at most (a write forwarded by another peer, half of
 * `forwardTimeoutMs` at most, then it is refused unwritten). Past that, writes while it is behind
 * are refused (503, retry). An owner that met no neighbour with its later ops numbers on from its
 * copy: that fork is mended when found (see "A fork of our own numbering" below).
 *
 * Receiving: ops of an owner are applied strictly in sequence order; an op past a gap waits in a
 * bounded buffer (and the sender is asked for the gap by sending it our version vector), a
 * duplicate is ignored. So every replica applies every owner's ops exactly once, in order, and
 * ends in the owner's state.
 *
 * Deletes: deleting a node deletes, at its owner, its subtree's nodes of that owner; every other
 * owner deletes its own nodes below it when the tombstone reaches it. Until then replicas hide
 * nodes under a deleted parent (store.ts `nodes`).
 */

import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { type Clock, type HybridClock, wallOf } from '../clock.ts';
import { ERRORS, type ErrorCode, ShoalError } from '../errors.ts';
import type { EventBus } from '../events.ts';
import { jsonProblem } from '../json-depth.ts';
import { encodeMessage, type LinkMessage, type WriteRequest } from '../link/messages.ts';
import type { Logger } from '../log.ts';
import type { MeshApplication } from '../mesh/mesh.ts';
import type { Metrics } from '../metrics.ts';
import {
  type DataPointKind,
  isNodeType,
  metaProblem,
  PARENT_TYPES,
  valueProblem,
} from '../store/node-types.ts';
import {
  apiNodeOf,
  type NodeState,
  type Op,
  type Reading,
  type ShoalNode,
  type Store,
  type StoredNode,
  toApi,
} from '../store/store.ts';

/** What replication needs of the mesh. */
export interface MeshPort {
  /** Sends a message, or one already encoded with `encodeMessage`. */
  send(peerId: string, message: LinkMessage | Buffer): boolean;
  congested(peerId: string): boolean;
  directPeers(): string[];
  nextHop(peerId: string): string | undefined;
  linked(a: string, b: string): boolean;
  /** Goes up whenever `linked` may answer differently. */
  readonly linkVersion: number;
  /**
   * True when some peer is linked directly and so is every peer known to be up: none is reached
   * only through others or being dialled. (Peers known to be down do not count.)
   */
  formed(): boolean;
}

export interface ReplicatorDeps {
  selfId: string;
  store: Store;
  mesh: MeshPort;
  clock: Clock;
  hlc: HybridClock;
  events: EventBus;
  metrics: Metrics;
  log: Logger;
  /** True for a server retired from the mesh (retirement.ts): its ops are ignored. */
  retired: (owner: string) => boolean;
}

export interface ReplicatorOptions {
  /** How long a forwarded write may take before the API answers 503. */
  forwardTimeoutMs: number;
  /** Local writes waiting for their commit beyond which new ones get 503 (backpressure). */
  maxPendingWrites: number;
  /** How long a start holds local writes at most (Config.restartHoldMs; see the module comment). */
  restartHoldMs: number;
  /** Ops per `ops` message, at most. */
  batchOps: number;
  /** Bytes per `ops` or `snap` message, at most (half the link's Config.maxFrameBytes). */
  batchBytes: number;
  /** How deep a node's meta or value may nest (Config.maxJsonDepth). */
  maxJsonDepth: number;
  /** How large a node's state may be as JSON (Config.maxNodeBytes). */
  maxNodeBytes: number;
  /** Bytes of one owner's newest ops kept in memory for sending (Config.opCacheBytes). */
  opCacheBytes: number;
  /** Bytes of local writes waiting to be answered beyond which new ones get 503
   * (Config.maxPendingWriteBytes). */
  maxPendingWriteBytes: number;
  /** The least time between two flushes (Config.replicationBatchMs). */
  batchMs: number;
  /** How long replicated ops may wait for their commit (Config.replicaCommitMs). */
  replicaCommitMs: number;
  /** Ops held back waiting for an earlier one of their owner, at most. */
  maxPendingOps: number;
  antiEntropyIntervalMs: number;
  /**
   * How durable a local write is before it is answered and sent (Config.storeSync): FULL waits
   * for an fsync of the store's log (`Store.syncLog`, off the event loop), NORMAL does not.
   */
  localSync: 'FULL' | 'NORMAL';
}

export interface WriteOutcome {
  node: ShoalNode | undefined;
  /** The owner's seq of the op (0 when the write changed nothing). */
  seq: number;
}

/**
 * One data point's readings to fetch: from `from` to `to` (ms), and at `to` those of ops up to
 * `seq`; `next`: the millisecond reached before a restart.
 */
interface ReadingsTask {
  id: string;
  from: number;
  to: number;
  seq: number;
  next?: number;
}

/**
 * An owner's readings being fetched after snapshots (`#backfill`): `tasks` in turn, the first from
 * `next` on (less the first `skip` of those at `next`, in `peer`'s order). `held`: the readings this
 * server had at millisecond `heldAt` when it began there, by value, still to be met in the pages.
 */
interface Backfill {
  tasks: ReadingsTask[];
  next: number;
  skip: number;
  held: Map<string, number>;
  heldAt: number;
  /** Undefined while no neighbour that has the snapshots' ops is linked. */
  peer: string | undefined;
  /** The `ref` of the page asked for. */
  ref: number;
  /** "Later" answers in a row from `peer`. */
  laters: number;
  timer: NodeJS.Timeout | undefined;
}

interface Pending {
  req: WriteRequest;
  resolve: (outcome: WriteOutcome) => void;
  reject: (err: ShoalError) => void;
  /** How long a start's hold may keep it (`#local`), and the timer that then refuses it. */
  heldAtMostMs: number;
  refusal?: ReturnType<typeof setTimeout>;
  /** Committed in a transaction of its own, after one with others failed (`#commit`). */
  alone?: boolean;
}

/** Nodes per `snap` message, at most (fewer when they are large: `batchBytes`). */
const SNAPSHOT_CHUNK = 500;
/** Readings in one page of a backfill (and `batchBytes` of them at most). */
const READINGS_PAGE = 5000;
/** How long a backfill waits for a page before it gives up (a peer too old to know the messages). */
const READINGS_TIMEOUT_MS = 30_000;
/** How long a backfill told "later" waits before it asks again, and how many times, before it
 * asks only at each vector. */
const READINGS_RETRY_MS = 1000;
const READINGS_RETRIES = 30;
const MAX_HOPS = 16;
const GAP_REQUEST_MS = 250;
const LAG_POLL_MS = 20;
const RECENT_RESULTS = 4096;
/** Stamps of the other history's ops merged while mending forks, remembered at most. */
const MERGED_STAMPS = 100_000;
/** Ops per owner kept in memory for sending (between this and twice this). */
const RECENT_OPS = 5000;

/**
 * About how many bytes a write holds: its value and meta as JSON (a number or a flag: 8; a value
 * too deep to write: 0, as `#opsFor` refuses it).
 */
function requestBytes(req: WriteRequest): number {
  const sizeOf = (value: unknown): number => {
    if (typeof value === 'string') return value.length;
    if (typeof value !== 'object' || value === null) return 8;
    try {
      return JSON.stringify(value).length;
    } catch {
      return 0;
    }
  };
  switch (req.kind) {
    case 'create':
      return sizeOf(req.node.meta) + sizeOf(req.node.value) + req.node.name.length;
    case 'update':
      return sizeOf(req.meta) + (req.name?.length ?? 0);
    case 'value':
      return sizeOf(req.value);
    case 'delete':
      return 8;
  }
}

export class Replicator implements MeshApplication {
  readonly #deps: ReplicatorDeps;
  readonly #options: ReplicatorOptions;
  /**
   * Applied seq per owner (mirrors the store, read on every send decision). Our own entry counts
   * only ops known durable: nothing else is answered, evented, or sent to any peer.
   */
  readonly #vv = new Map<string, number>();
  /** The last seq of ours committed here, durable or not yet: the next op gets the one after. */
  #committed = 0;
  /**
   * A fork of our numbering being mended (`#mendFork`): `peer` holds ops of ours up to `upTo`
   * that an older run numbered alike; they come back from `next` on, and are merged.
   */
  #fork: { peer: string; next: number; upTo: number } | undefined;
  /** A holder of more such ops, heard of while a fork was being mended: mended next. */
  #nextFork: { peer: string; upTo: number } | undefined;
  /**
   * Stamps of the other history's ops merged in this run, by seq (the last MERGED_STAMPS): a
   * peer that holds one of them holds nothing we have not merged, and needs no mend.
   */
  readonly #mergedStamps = new Map<number, string>();
  /** Our ops committed but not yet known durable, in order. */
  readonly #undurable: Op[] = [];
  /** What to do when those are durable, or their fsync failed: per commit, in order. */
  readonly #unsynced: ((err: Error | null) => void)[] = [];
  #syncing = false;
  /** The failed fsync, once one failed: local writes are refused from then on (`#sync`). */
  #diskFailure: Error | undefined;
  /** Local writes committed and waiting for their fsync (they count towards maxPendingWrites). */
  #awaitingSync = 0;
  /** About how many bytes the local writes not yet answered hold (`requestBytes`). */
  #pendingBytes = 0;
  /** Per direct peer: per owner, the seq that peer is known to have. Undefined until its vv. */
  readonly #cursors = new Map<string, Map<string, number> | undefined>();
  /** Per owner, the direct peers that get its ops from us (`#serves`), while links stay put. */
  readonly #servedTo = new Map<string, string[]>();
  #servedVersion = -1;
  /** The highest seq of each owner heard of (in ops or version vectors), for the lag metric. */
  readonly #heads = new Map<string, number>();
  /**
   * Direct peers that lack ops of their own that we hold: they run on an older copy of their
   * data (a backup put back after a dead SD card). We send them their own ops, as to any peer
   * that lacks an owner's ops, until they have them all.
   */
  readonly #returning = new Set<string>();
  /**
   * After a start, local writes wait in `#queue`, uncommitted, until the mesh has told us how far
   * our own ops go (`#endHoldWhenCaughtUp`), for `restartHoldMs` at most (see the module comment).
   */
  #holding = false;
  /** True until `restartHoldMs` after the start: a hold may begin again (`#commit`). */
  #holdOpen = false;
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  /** Owners found numbering two ops alike (`#checkDuplicate`), said once each. */
  readonly #reusedReported = new Set<string>();
  /** Callers of `whenWritable`. */
  #writableWaiters: (() => void)[] = [];
  /** Ops that arrived past a gap, per owner, by seq. */
  readonly #early = new Map<string, Map<number, Op>>();
  #earlyCount = 0;
  readonly #lastGapRequest = new Map<string, number>();
  readonly #gapTimers = new Map<string, ReturnType<typeof setTimeout>>();
  /** Snapshot chunks being received, per owner and sender. */
  readonly #incoming = new Map<string, { seq: number; nodes: StoredNode[] }>();
  /** Per owner, the readings being fetched after a snapshot of its nodes (`#backfill`). */
  readonly #backfills = new Map<string, Backfill>();
  #readingsRef = 0;
  readonly #queue: Pending[] = [];
  readonly #recentOps = new Map<string, Op[]>();
  /** Bytes (as stored) of the ops in `#recentOps`, per owner. */
  readonly #recentBytes = new Map<string, number>();
  #commitScheduled = false;
  #flushScheduled = false;
  /** The owners the next flush looks at: every one, or only those with ops applied since the last. */
  #flushAll = true;
  readonly #unflushed = new Set<string>();
  #replicaCommitTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the last flush ran (clock ms). */
  #lastFlushAt = Number.NEGATIVE_INFINITY;
  #lagTimer: ReturnType<typeof setTimeout> | undefined;
  #antiEntropyTimer: ReturnType<typeof setInterval> | undefined;
  #routesTimer: ReturnType<typeof setTimeout> | undefined;
  /** Forwarded writes of ours awaiting the owner's answer. */
  readonly #forwarded = new Map<
    string,
    {
      owner: string;
      resolve: (o: WriteOutcome) => void;
      reject: (e: ShoalError) => void;
      timer: ReturnType<typeof setTimeout>;
    }
  >();
  /** Forwarded writes handled here as owner: rid to answer, so a retry is not applied twice. */
  readonly #recent = new Map<string, Promise<WriteOutcome>>();
  /** Callers waiting until an owner's ops are applied here up to a seq (read-your-writes). */
  readonly #waiters: { owner: string; seq: number; resolve: () => void }[] = [];
  #running = false;

  constructor(deps: ReplicatorDeps, options: ReplicatorOptions) {
    this.#deps = deps;
    this.#options = options;
    for (const [owner, seq] of Object.entries(deps.store.versionVector())) this.#vv.set(owner, seq);
    this.#committed = this.#vv.get(deps.selfId) ?? 0;
    deps.store.onPendingLost = (err) => this.#forgetUncommitted(err);
    const m = deps.metrics;
    m.gauge(
      'shoal_replication_applied_seq',
      'Highest op of each owner applied here, in order.',
      ['owner'],
      () => [...this.#vv].map(([owner, seq]) => [{ owner }, seq]),
    );
    m.gauge(
      'shoal_replication_peer_lag_ops',
      'Ops this peer has that a direct peer is not yet known to have.',
      ['peer'],
      () => [...this.#cursors].map(([peer, cursors]) => [{ peer }, cursors ? this.#lagOf(peer, cursors) : 0]),
    );
    m.gauge(
      'shoal_replication_pending_writes',
      'Local writes waiting for their commit or its fsync.',
      [],
      () => [[{}, this.#queue.length + this.#awaitingSync]],
    );
    m.gauge(
      'shoal_replication_lag_ops',
      'Ops of each owner heard of but not yet applied here.',
      ['owner'],
      () =>
        [...this.#vv].map(([owner, seq]) => [{ owner }, Math.max(0, (this.#heads.get(owner) ?? seq) - seq)]),
    );
    m.gauge('shoal_store_nodes', 'Live nodes in the store.', [], () => [[{}, deps.store.liveNodes()]]);
    m.gauge('shoal_store_bytes', "Bytes of the store's database pages.", [], () => [
      [{}, deps.store.sizeBytes()],
    ]);
  }

  start(): void {
    this.#running = true;
    const { selfId, log, store, hlc } = this.#deps;
    // Stamps never go back across a restart, even when the wall clock did (a Pi without a
    // real-time clock starts with the time it last saved): the clock starts past every stamp held,
    // as it was once each came (within the drift allowed).
    for (const owner of Object.keys(store.versionVector())) {
      const head = store.ownerState(owner).headHlc;
      if (head !== undefined) hlc.receive(head);
    }
    const met = [...this.#vv.keys()].some((owner) => owner !== selfId);
    if (met && this.#options.restartHoldMs > 0) {
      log.info(
        { maxMs: this.#options.restartHoldMs },
        'holding local writes until the mesh tells how far our own changes go',
      );
      this.#holdOpen = true;
      // A timer, not a deadline on the clock: an NTP step at boot must not stretch or end it.
      this.#holdTimer = setTimeout(() => {
        this.#holdOpen = false;
        if (this.#holding) this.#endHold();
      }, this.#options.restartHoldMs);
      this.#holdTimer.unref();
      this.#hold();
    }
    this.#antiEntropyTimer = setInterval(() => this.#swapVectors(), this.#options.antiEntropyIntervalMs);
    this.#antiEntropyTimer.unref();
    // Readings a snapshot before a stop could not carry, not all fetched yet: asked for once a
    // neighbour with the ops links.
    const kept = new Map<string, ReadingsTask[]>();
    for (const { owner, ...task } of this.#deps.store.backfill()) {
      if (!kept.has(owner)) kept.set(owner, []);
      kept.get(owner)!.push(task);
    }
    for (const [owner, tasks] of kept) {
      if (this.#deps.retired(owner)) this.#endBackfill(owner);
      else this.#backfill(owner, undefined, tasks);
    }
  }

  stop(): void {
    this.#running = false;
    clearTimeout(this.#holdTimer);
    this.#holding = false;
    this.#holdOpen = false;
    this.#writableWaiters = [];
    clearTimeout(this.#replicaCommitTimer);
    this.#replicaCommitTimer = undefined;
    this.#deps.store.commitPending();
    clearInterval(this.#antiEntropyTimer);
    clearTimeout(this.#lagTimer);
    clearTimeout(this.#routesTimer);
    for (const timer of this.#gapTimers.values()) clearTimeout(timer);
    this.#gapTimers.clear();
    for (const owner of [...this.#backfills.keys()]) this.#endBackfill(owner, true);
    for (const [rid, f] of this.#forwarded) {
      clearTimeout(f.timer);
      f.reject(new ShoalError('SHOAL_OWNER_UNREACHABLE', 'the server is shutting down'));
      this.#forwarded.delete(rid);
    }
    for (const p of this.#queue.splice(0))
      p.reject(new ShoalError('SHOAL_OVERLOADED', 'the server is shutting down'));
  }

  /** True while a start holds local writes (see the module comment): they are answered later. */
  get holdingWrites(): boolean {
    return this.#holding;
  }

  /**
   * Resolves once local writes are taken: the start's hold is over and no ops of ours are missing
   * here (never, if they never come back; not after `stop`).
   */
  whenWritable(): Promise<void> {
    return new Promise((resolve) => {
      this.#writableWaiters.push(resolve);
      this.#wakeWritable();
    });
  }

  /** The applied seq of every owner. */
  versionVector(): Record<string, number> {
    return Object.fromEntries(this.#vv);
  }

  /**
   * Performs a write where it belongs: here when this server owns the node, else at its owner.
   * Resolves once the owner has committed it durably and this replica has applied it.
   */
  async write(owner: string, req: WriteRequest): Promise<WriteOutcome> {
    if (owner === this.#deps.selfId) return this.#local(req);
    // Checked here too: a value too deep to write could not even be forwarded, and one larger
    // than a node may be would make a link message too large for the link.
    const node = req.kind === 'create' ? req.node : req;
    if ('meta' in node) this.#checkDepth('meta', node.meta);
    if ('value' in node) this.#checkDepth('value', node.value);
    const bytes = requestBytes(req);
    if (bytes > this.#options.maxNodeBytes) {
      throw new ShoalError(
        'SHOAL_TOO_LARGE',
        `about ${bytes} bytes of name, meta and value, more than a node may hold (maxNodeBytes ${this.#options.maxNodeBytes})`,
      );
    }
    return this.#forward(owner, req);
  }

  /** The owner of the node a write is about (for create: the owner asked for). */
  ownerOf(id: string): string {
    const node = this.#deps.store.node(id);
    if (!node || node.deleted) throw new ShoalError('SHOAL_NOT_FOUND', `no node ${id}`);
    return node.owner;
  }

  /**
   * Forgets what is held in memory of `owner`, retired from the mesh (its rows are gone from the
   * store already): it is no longer sent, asked for, waited on or counted.
   */
  forgetOwner(owner: string): void {
    this.#vv.delete(owner);
    this.#heads.delete(owner);
    this.#recentOps.delete(owner);
    for (const key of this.#incoming.keys()) if (key.startsWith(`${owner}/`)) this.#incoming.delete(key);
    this.#earlyCount -= this.#early.get(owner)?.size ?? 0;
    this.#early.delete(owner);
    this.#returning.delete(owner);
    this.#endBackfill(owner);
    this.#servedTo.clear();
    for (const cursors of this.#cursors.values()) cursors?.delete(owner);
  }

  // --- Mesh events -------------------------------------------------------------------------

  linkUp(peerId: string): void {
    this.#cursors.set(peerId, undefined);
    this.#servedTo.clear();
    this.#deps.mesh.send(peerId, this.#vectorFor(peerId));
  }

  linkDown(peerId: string): void {
    this.#cursors.delete(peerId);
    this.#returning.delete(peerId);
    // A fork is mended again when a holder of the other ops is heard of again.
    if (this.#fork?.peer === peerId) this.#fork = undefined;
    if (this.#nextFork?.peer === peerId) this.#nextFork = undefined;
    // A snapshot half sent by it is sent again whole when the link is back.
    for (const key of this.#incoming.keys()) if (key.endsWith(`/${peerId}`)) this.#incoming.delete(key);
    // A backfill from it goes on with the next neighbour that has the snapshots' ops (or waits
    // for one to link).
    for (const [owner, b] of this.#backfills) {
      if (b.peer !== peerId) continue;
      clearTimeout(b.timer);
      this.#askElsewhere(owner, b);
    }
    this.#servedTo.clear();
    this.#endHoldWhenCaughtUp();
  }

  routesChanged(): void {
    this.#endHoldWhenCaughtUp();
    // Debounced: a peer joining changes many views at once.
    if (this.#routesTimer) return;
    this.#routesTimer = setTimeout(() => {
      this.#routesTimer = undefined;
      this.#swapVectors();
      this.#scheduleFlush();
    }, 50);
    this.#routesTimer.unref();
  }

  message(peerId: string, message: LinkMessage): void {
    switch (message.t) {
      case 'vv': {
        // A peer that has not heard of a retirement yet still lists the retired server.
        const entries = Object.entries(message.vv).filter(([owner]) => !this.#deps.retired(owner));
        for (const [owner, seq] of entries) this.#heard(owner, seq);
        if (message.yours) this.#checkOwnHistory(peerId, message.yours, message.vv[this.#deps.selfId] ?? 0);
        if (message.mine) this.#checkTheirHistory(peerId, message.vv[peerId] ?? 0, message.mine);
        this.#cursors.set(peerId, new Map(entries));
        for (const [owner, b] of this.#backfills) if (b.peer === undefined) this.#askElsewhere(owner, b);
        const own = message.vv[peerId] ?? 0;
        if (own >= (this.#vv.get(peerId) ?? 0)) this.#doneReturning(peerId);
        else if (!this.#returning.has(peerId)) {
          // Also seen, harmlessly, when a relay brought us its newest op before this vector.
          this.#deps.log.debug(
            { peer: peerId, has: own, we: this.#vv.get(peerId) },
            'sending a peer its own ops',
          );
          this.#returning.add(peerId);
          this.#servedTo.clear();
        }
        this.#endHoldWhenCaughtUp();
        this.#scheduleFlush();
        return;
      }
      case 'ops':
        this.#receiveOps(peerId, message.ops as Op[]);
        return;
      case 'snap':
        this.#receiveSnapshot(peerId, message);
        return;
      case 'write':
        this.#onWrite(message);
        return;
      case 'wres':
        this.#onWriteResult(message);
        return;
      case 'rdq':
        this.#answerReadings(peerId, message);
        return;
      case 'rd':
        this.#receiveReadings(peerId, message);
        return;
      default:
        return;
    }
  }

  // --- Local writes: validated, committed in groups, then pushed ----------------------------

  /**
   * `heldAtMostMs`: how long the write may wait for the start's hold (see the module comment)
   * before it is refused, not written; a forwarded write's sender times out after
   * `forwardTimeoutMs`, and a clean refusal before that beats an answer of "it may be written".
   */
  #local(req: WriteRequest, heldAtMostMs = Number.POSITIVE_INFINITY): Promise<WriteOutcome> {
    if (!this.#running)
      return Promise.reject(new ShoalError('SHOAL_OVERLOADED', 'the server is not running'));
    if (this.#diskFailure) return Promise.reject(this.#refusedForDisk());
    if (this.#queue.length + this.#awaitingSync >= this.#options.maxPendingWrites) {
      this.#deps.metrics.writesRefused.inc({ reason: 'overloaded' });
      return Promise.reject(
        new ShoalError(
          'SHOAL_OVERLOADED',
          `more than ${this.#options.maxPendingWrites} writes are waiting; retry shortly`,
        ),
      );
    }
    // Bytes too: a burst of large values held in the queue filled a small heap. (One write is
    // always taken, whatever its size: maxNodeBytes bounds it.)
    const bytes = requestBytes(req);
    if (this.#pendingBytes > 0 && this.#pendingBytes + bytes > this.#options.maxPendingWriteBytes) {
      this.#deps.metrics.writesRefused.inc({ reason: 'overloaded' });
      return Promise.reject(
        new ShoalError(
          'SHOAL_OVERLOADED',
          `more than ${this.#options.maxPendingWriteBytes} bytes of writes are waiting (maxPendingWriteBytes); retry shortly`,
        ),
      );
    }
    this.#pendingBytes += bytes;
    let settled = false;
    const release = (): void => {
      if (settled) return;
      settled = true;
      this.#pendingBytes -= bytes;
    };
    return new Promise((resolve, reject) => {
      const pending: Pending = {
        req,
        resolve: (outcome) => {
          release();
          resolve(outcome);
        },
        reject: (err) => {
          release();
          reject(err);
        },
        heldAtMostMs,
      };
      this.#queue.push(pending);
      if (this.#holding) this.#refuseWhenOverdue(pending);
      else this.#scheduleCommit();
    });
  }

  /** Refuses a held write, unwritten, once it was held `heldAtMostMs` (see `#local`). */
  #refuseWhenOverdue(pending: Pending): void {
    if (pending.refusal || pending.heldAtMostMs === Number.POSITIVE_INFINITY) return;
    pending.refusal = setTimeout(() => {
      const at = this.#queue.indexOf(pending);
      if (at < 0 || !this.#holding) return;
      this.#queue.splice(at, 1);
      pending.reject(
        new ShoalError(
          'SHOAL_OVERLOADED',
          `the owner ${this.#deps.selfId} has just started and is catching up with the mesh: nothing was written; retry shortly`,
        ),
      );
    }, pending.heldAtMostMs);
    pending.refusal.unref();
  }

  #scheduleCommit(): void {
    if (this.#commitScheduled) return;
    this.#commitScheduled = true;
    setImmediate(() => this.#commit());
  }

  /**
   * The mesh holds ops of ours we lack (see `#returning`), or ops numbered alike by another copy
   * of ours (`#mendFork`): numbering on would reuse their seqs.
   */
  #lacksOwnOps(): boolean {
    return this.#fork !== undefined || (this.#heads.get(this.#deps.selfId) ?? 0) > this.#committed;
  }

  /** Holds local writes until the mesh has told us how far our ops go (or the hold's time is up). */
  #hold(): void {
    this.#holding = true;
    for (const pending of this.#queue) this.#refuseWhenOverdue(pending);
  }

  #endHoldWhenCaughtUp(): void {
    if (!this.#holding || this.#lacksOwnOps() || !this.#deps.mesh.formed()) return;
    for (const peer of this.#deps.mesh.directPeers()) if (this.#cursors.get(peer) === undefined) return;
    this.#endHold();
  }

  #endHold(): void {
    this.#holding = false;
    if (this.#queue.length > 0) this.#scheduleCommit();
    this.#wakeWritable();
  }

  #wakeWritable(): void {
    if (this.#holding || this.#lacksOwnOps()) return;
    for (const resolve of this.#writableWaiters.splice(0)) resolve();
  }

  /**
   * Commits every queued write in one transaction, then answers them, events them and sends them
   * on once the commit is durable (`#whenDurable`): one fsync for the whole group, or for several.
   */
  #commit(): void {
    this.#commitScheduled = false;
    // A write marked `alone` is committed on its own (see the rollback below).
    const alone = this.#queue[0]?.alone === true;
    const batch = alone ? this.#queue.splice(0, 1) : this.#queue.splice(0);
    if (batch.length === 0) return;
    if (alone && this.#queue.length > 0) this.#scheduleCommit();
    if (this.#diskFailure) {
      // Taken before an fsync failed: nothing of them is stored.
      for (const item of batch) item.reject(this.#refusedForDisk());
      return;
    }
    if (this.#lacksOwnOps()) {
      if (this.#holdOpen) {
        // A vector came after the hold ended: the start's hold goes on while it may.
        this.#queue.unshift(...batch);
        this.#hold();
        return;
      }
      const refusal = new ShoalError(
        'SHOAL_OVERLOADED',
        'this server is getting its own earlier changes back from the mesh (it runs on an older copy of its data); retry shortly',
      );
      for (const item of batch) item.reject(refusal);
      return;
    }
    for (const item of batch) clearTimeout(item.refusal);
    const { store, selfId } = this.#deps;
    const outcomes: (WriteOutcome | ShoalError)[] = [];
    const applied: Op[] = [];
    const before = this.#committed;
    try {
      store.transaction('NORMAL', () => {
        for (const item of batch) {
          try {
            const ops = this.#opsFor(item.req);
            let last: Op | undefined;
            for (const op of ops) {
              // Our numbering out of step with the store would answer a write never stored: the
              // transaction goes back instead (`alone` below, then SHOAL_INTERNAL).
              const result = store.applyOp(op);
              if (result !== 'applied') throw new Error(`op ${op.seq} of ours was ${result} in the store`);
              this.#committed = op.seq;
              applied.push(op);
              last = op;
            }
            const node = last && last.kind !== 'delete' ? apiNodeOf(last) : undefined;
            outcomes.push({ node, seq: last?.seq ?? 0 });
          } catch (err) {
            if (!(err instanceof ShoalError)) throw err;
            outcomes.push(err);
          }
        }
      });
    } catch (err) {
      this.#committed = store.ownerState(selfId).applied;
      if (this.#committed > before) {
        // COMMIT failed after it committed: SQLite's own checkpoint at the commit (its fsync)
        // failed. The writes are stored, their durability unknown: a disk failure (`#sync`).
        this.#diskFailure = err as Error;
        this.#deps.log.error(
          { err },
          'a checkpoint of the store failed: local writes are refused until a restart',
        );
        for (const item of batch) item.reject(unsure(err as Error));
        return;
      }
      // The transaction rolled back: nothing of the batch is stored.
      if (batch.length > 1) {
        // Some write of the group broke its transaction (a bad write no check foresaw, a full
        // disk): each is tried again on its own, so that a bad one fails alone.
        for (const item of batch) item.alone = true;
        this.#queue.unshift(...batch);
        this.#scheduleCommit();
        return;
      }
      this.#deps.log.error({ err }, 'commit failed');
      for (const item of batch)
        item.reject(new ShoalError('SHOAL_INTERNAL', 'the store could not commit the write'));
      return;
    }
    this.#deps.metrics.opsApplied.inc({ source: 'local' }, applied.length);
    this.#undurable.push(...applied);
    this.#awaitingSync += batch.length;
    this.#whenDurable((err) => {
      this.#awaitingSync -= batch.length;
      batch.forEach((item, i) => {
        const outcome = outcomes[i]!;
        if (outcome instanceof ShoalError) item.reject(outcome);
        else if (err) item.reject(unsure(err));
        else item.resolve(outcome);
      });
    });
  }

  #refusedForDisk(): ShoalError {
    this.#deps.metrics.writesRefused.inc({ reason: 'disk' });
    return new ShoalError(
      'SHOAL_DATA_DIR',
      `the disk failed an fsync (${this.#diskFailure?.message}): this server takes no writes until it restarts`,
    );
  }

  /**
   * Runs `then` once every commit so far is durable, in commit order. With localSync FULL one
   * fsync is running at most, and the next covers every commit made meanwhile (group commit);
   * only then do our new ops count as applied here (`#vv`), get evented and go to peers.
   * A failed fsync (a dying disk) stops that for good in this run: after one, Linux may report
   * later fsyncs as done although the failed pages never reached the disk, so no later fsync can
   * vouch for those ops, and the mesh must not get ops of ours that a power cut could take back
   * (we would number others the same). The writes waiting are refused, and so are all new ones
   * until a restart, which fsyncs the log afresh and sends what it holds. (A restart without a
   * reboot may read back pages the kernel still caches but never wrote: an operator who sees
   * this error should check the disk, and reboot, before restarting.)
   */
  #whenDurable(then: (err: Error | null) => void): void {
    if (this.#diskFailure) {
      then(this.#diskFailure); // Nothing of ours becomes durable any more (a waiting snapshot).
      return;
    }
    this.#unsynced.push(then);
    if (this.#options.localSync === 'NORMAL') this.#durable(this.#unsynced.splice(0));
    else if (!this.#syncing) this.#sync();
  }

  #sync(): void {
    this.#syncing = true;
    const waiting = this.#unsynced.splice(0);
    const covered = this.#undurable.length;
    this.#deps.store.syncLog((err) => {
      this.#syncing = false;
      if (err) {
        this.#diskFailure = err;
        this.#deps.log.error({ err }, 'fsync of the store failed: local writes are refused until a restart');
        for (const then of [...waiting, ...this.#unsynced.splice(0)]) then(err);
        return;
      }
      this.#durable(waiting, covered);
      if (this.#unsynced.length > 0) this.#sync();
    });
  }

  /** The first `count` undurable ops are durable: count them applied, answer, event, send. */
  #durable(waiting: ((err: Error | null) => void)[], count = this.#undurable.length): void {
    const ops = this.#undurable.splice(0, count);
    // (A fork mended meanwhile may have moved our numbering past them: `#endFork`.)
    const last = ops[ops.length - 1]?.seq ?? 0;
    if (last > (this.#vv.get(this.#deps.selfId) ?? 0)) this.#vv.set(this.#deps.selfId, last);
    for (const then of waiting) then(null);
    this.#afterApply(ops);
  }

  /** The ops a write turns into, checked against the current state. Throws ShoalError. */
  #opsFor(req: WriteRequest): Op[] {
    const { store, selfId, hlc } = this.#deps;
    let seq = this.#committed;
    const op = (kind: Op['kind'], node: NodeState): Op => ({
      owner: selfId,
      seq: ++seq,
      hlc: hlc.now(),
      kind,
      node,
    });
    if (req.kind === 'create') {
      const n = req.node;
      const existing = store.node(n.id);
      if (existing && !existing.deleted) {
        // A retried create: the node is there already.
        if (existing.owner === selfId && existing.type === n.type) return [];
        throw new ShoalError('SHOAL_CONFLICT', `node ${n.id} exists already`);
      }
      if (existing?.deleted)
        throw new ShoalError('SHOAL_CONFLICT', `node ${n.id} was deleted; ids are not reused`);
      this.#checkNode(n);
      return [op('create', n)];
    }
    const current = store.node(req.id);
    if (!current || current.deleted) throw new ShoalError('SHOAL_NOT_FOUND', `no node ${req.id}`);
    if (current.owner !== selfId) {
      throw new ShoalError(
        'SHOAL_CONFLICT',
        `node ${req.id} is owned by ${current.owner}, not by this server`,
      );
    }
    const state: NodeState = stateOf(current);
    switch (req.kind) {
      case 'update': {
        const next = {
          ...state,
          ...(req.name === undefined ? {} : { name: req.name }),
          ...(req.meta === undefined ? {} : { meta: req.meta }),
        };
        // A change to what the node already is makes no op (and no new version).
        if (next.name === state.name && isDeepStrictEqual(next.meta, state.meta)) return [];
        this.#checkNode(next);
        return [op('update', next)];
      }
      case 'value': {
        if (current.type !== 'DataPoint') {
          throw new ShoalError(
            'SHOAL_BAD_REQUEST',
            `node ${req.id} is a ${current.type}; only a DataPoint takes a value`,
          );
        }
        const problem = valueProblem((current.meta.kind as DataPointKind | undefined) ?? 'number', req.value);
        if (problem) throw new ShoalError('SHOAL_BAD_REQUEST', problem);
        state.value = req.value;
        // (A number or a boolean adds a few bytes to what was checked when the meta was set.)
        if (typeof req.value === 'object' || typeof req.value === 'string') this.#checkSize(state);
        else this.#checkDepth('value', req.value); // 1e400 of a json data point: Infinity.
        return [op('value', state)];
      }
      case 'delete': {
        if (current.type === 'Server')
          throw new ShoalError('SHOAL_BAD_REQUEST', 'a Server node goes away with its server, not by delete');
        // The node and, below it, every node of this owner; other owners delete their own.
        const ids = [req.id, ...this.#descendants(req.id).filter((id) => store.node(id)?.owner === selfId)];
        return ids.map((id) => op('delete', stateOf(store.node(id)!)));
      }
    }
  }

  /**
   * Holds a node's state to `maxJsonDepth` and `maxNodeBytes`: a deeper value cannot be written
   * anywhere (JSON.stringify recurses), and every op of the node carries its whole state, so a
   * larger one would make messages no link takes.
   */
  #checkSize(n: NodeState): void {
    const { maxNodeBytes } = this.#options;
    this.#checkDepth('meta', n.meta);
    this.#checkDepth('value', n.value);
    const bytes = Buffer.byteLength(JSON.stringify(n));
    if (bytes > maxNodeBytes) {
      throw new ShoalError(
        'SHOAL_TOO_LARGE',
        `node ${n.id}: ${bytes} bytes of name, meta and value as JSON, more than ${maxNodeBytes} (maxNodeBytes)`,
      );
    }
  }

  #checkDepth(field: string, value: unknown): void {
    const problem = jsonProblem(value, this.#options.maxJsonDepth);
    if (problem) throw new ShoalError('SHOAL_BAD_REQUEST', `${field}: ${problem}`);
  }

  #checkNode(n: NodeState): void {
    if (!isNodeType(n.type))
      throw new ShoalError('SHOAL_BAD_REQUEST', `type: "${String(n.type)}" is not a node type`);
    if (!n.name.trim()) throw new ShoalError('SHOAL_BAD_REQUEST', 'name: must not be empty');
    // A lone UTF-16 surrogate cannot be stored as UTF-8: it would come back as other characters.
    if (/\p{Surrogate}/u.test(n.name)) {
      throw new ShoalError('SHOAL_BAD_REQUEST', 'name: holds a lone UTF-16 surrogate (not a character)');
    }
    this.#checkSize(n);
    const problem = metaProblem(n.type, n.meta);
    if (problem) throw new ShoalError('SHOAL_BAD_REQUEST', problem);
    const allowed = PARENT_TYPES[n.type];
    if (n.parent === null) {
      if (allowed.length > 0) throw new ShoalError('SHOAL_BAD_REQUEST', `parent: a ${n.type} needs a parent`);
      return;
    }
    if (allowed.length === 0) throw new ShoalError('SHOAL_BAD_REQUEST', `parent: a ${n.type} has no parent`);
    const parent = this.#deps.store.visibleNode(n.parent);
    if (!parent) throw new ShoalError('SHOAL_BAD_REQUEST', `parent: no node "${n.parent}"`);
    if (!allowed.includes(parent.type)) {
      throw new ShoalError(
        'SHOAL_BAD_REQUEST',
        `parent: a ${n.type} cannot hang under a ${parent.type} (only ${allowed.join(', ')})`,
      );
    }
    if (n.value !== undefined) {
      if (n.type !== 'DataPoint')
        throw new ShoalError('SHOAL_BAD_REQUEST', 'value: only a DataPoint takes a value');
      const vp = valueProblem((n.meta.kind as DataPointKind | undefined) ?? 'number', n.value);
      if (vp) throw new ShoalError('SHOAL_BAD_REQUEST', vp);
    }
  }

  #descendants(id: string): string[] {
    const out: string[] = [];
    const stack = [id];
    while (stack.length > 0) {
      for (const child of this.#deps.store.childIds(stack.pop()!)) {
        out.push(child);
        stack.push(child);
      }
    }
    return out;
  }

  /** After ops were applied here: events, cascading deletes, waiters, and pushing them on. */
  #afterApply(ops: Op[]): void {
    if (ops.length === 0) return;
    const { store, events, selfId } = this.#deps;
    const orphaned: string[] = [];
    for (const op of ops) {
      // In a full mesh a replica passes nothing on: nothing to remember or flush for its ops.
      const served = this.#servesAnyone(op.owner);
      this.#remember(op, served);
      if (served) this.#scheduleFlush(op.owner);
      events.publish({ type: 'node', op: op.kind, node: apiNodeOf(op) });
      if (op.kind === 'delete' && op.owner !== selfId) {
        orphaned.push(...this.#descendants(op.node.id).filter((id) => store.node(id)?.owner === selfId));
      }
    }
    this.#cascade(orphaned);
    this.#wakeWaiters();
  }

  /** Deletes nodes of this server left under another owner's deleted node. */
  #cascade(ids: string[]): void {
    for (const id of ids) {
      this.#local({ kind: 'delete', id }).catch((err: ShoalError) => {
        if (err.code !== 'SHOAL_NOT_FOUND') this.#deps.log.warn({ err, id }, 'cascading delete failed');
      });
    }
  }

  /**
   * Deletes this server's nodes whose parent is a tombstone (a cascade that was interrupted) or
   * gone (its tombstone was collected, or a snapshot left it out). A parent of a node of ours was
   * here when the node was made, so a parent that is gone was deleted.
   */
  sweepOrphans(): void {
    const { store, selfId } = this.#deps;
    const orphans = store
      .ownerNodes(selfId)
      .filter((n) => n.parent !== null && store.node(n.parent)?.deleted !== false)
      .map((n) => n.id);
    this.#cascade(orphans);
  }

  // --- Propagation --------------------------------------------------------------------------

  /**
   * Flushes at once when the last flush is `batchMs` ago, else when it will be: a lone write
   * leaves without delay, and a stream of them leaves in batches of what `batchMs` gathers.
   * (A wall clock set back does not hold flushes: the wait is never more than `batchMs`.)
   * With `owner`, only that owner's ops are new: the flush need not look at the others (in a
   * mesh of 25, every op arriving at a replica made it look at 25 owners for each of 24 peers).
   */
  #scheduleFlush(owner?: string): void {
    if (owner === undefined) this.#flushAll = true;
    else this.#unflushed.add(owner);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    const { batchMs } = this.#options;
    const wait = Math.min(batchMs, this.#lastFlushAt + batchMs - this.#deps.clock.now());
    if (wait <= 0) setImmediate(() => this.#flush());
    else setTimeout(() => this.#flush(), wait);
  }

  /** Sends every direct peer what it lacks and should get from us, a batch per owner at a time. */
  #flush(): void {
    this.#flushScheduled = false;
    if (!this.#running) return;
    this.#lastFlushAt = this.#deps.clock.now();
    const { mesh, store } = this.#deps;
    let lagging = false;
    // Peers mostly lack the same ops: each batch is read and encoded once, then sealed per link.
    const batches = new Map<string, { last: number; message: Buffer }>();
    const owners = (this.#flushAll ? [...this.#vv.keys()] : [...this.#unflushed]).filter((owner) =>
      this.#servesAnyone(owner),
    );
    this.#flushAll = false;
    this.#unflushed.clear();
    if (owners.length === 0) return;
    for (const [peer, cursors] of this.#cursors) {
      if (!cursors) continue;
      for (const owner of owners) {
        const applied = this.#vv.get(owner) ?? 0;
        const have = cursors.get(owner) ?? 0;
        if (have >= applied || !this.#serves(peer, owner)) continue;
        if (mesh.congested(peer)) {
          lagging = true;
          break;
        }
        const { logFloor } = store.ownerState(owner);
        if (have + 1 < logFloor) {
          if (owner === this.#deps.selfId && this.#committed > applied) {
            // Our nodes as they are now carry commits not yet durable: taken now, sent when
            // those are (waiting for a moment with none would starve the peer under load).
            const nodes = store.ownerSnapshot(owner);
            const seq = this.#committed;
            const hlc = this.#stampOf(owner, seq);
            cursors.set(owner, seq);
            this.#whenDurable((err) => {
              if (!err && this.#cursors.get(peer) === cursors)
                this.#sendSnapshot(peer, owner, nodes, seq, hlc);
            });
            continue;
          }
          this.#sendSnapshot(peer, owner);
          cursors.set(owner, applied);
          if (peer === owner) this.#doneReturning(peer);
          continue;
        }
        const key = `${owner}/${have}`;
        let batch = batches.get(key);
        if (!batch) {
          const ops = this.#opsAfter(owner, have, applied);
          if (ops.length === 0) continue;
          const encoded = this.#encodeOps(ops);
          batch = { last: encoded.last, message: encoded.bytes };
          batches.set(key, batch);
        }
        if (!mesh.send(peer, batch.message)) break;
        cursors.set(owner, batch.last);
        if (peer === owner && batch.last >= applied) this.#doneReturning(peer);
        if (batch.last < applied) lagging = true;
      }
    }
    if (lagging && !this.#lagTimer) {
      // Congested links and long backlogs are served again shortly, from the log.
      this.#lagTimer = setTimeout(() => {
        this.#lagTimer = undefined;
        this.#flushAll = true;
        this.#flush();
      }, LAG_POLL_MS);
    }
  }

  /**
   * Keeps the newest ops of each owner in memory, so sending them needs no read of the log; only
   * while `served` (some direct peer gets that owner's ops from us). In a full mesh a replica serves nobody,
   * and thousands of ops it would never send only outlived the young heap and fed its major GCs.
   * A peer that starts serving an owner reads the log until what it remembers reaches back far
   * enough (see `#opsAfter`).
   */
  #remember(op: Op, served: boolean): void {
    if (!served) {
      this.#recentOps.delete(op.owner);
      return;
    }
    let recent = this.#recentOps.get(op.owner);
    let bytes = this.#recentBytes.get(op.owner) ?? 0;
    if (!recent || (recent.length > 0 && recent[recent.length - 1]!.seq + 1 !== op.seq)) {
      recent = [];
      bytes = 0;
      this.#recentOps.set(op.owner, recent);
    }
    recent.push(op);
    const { store } = this.#deps;
    const { opCacheBytes } = this.#options;
    bytes += store.opBytes(op);
    // At most RECENT_OPS * 2 ops and opCacheBytes: large nodes make every op large (each carries
    // its node's whole state), and thousands of them filled a small heap. Trimmed to RECENT_OPS
    // ops and half of opCacheBytes, the newest kept (one at least).
    if (recent.length > RECENT_OPS * 2 || bytes > opCacheBytes) {
      let drop = Math.max(0, recent.length - RECENT_OPS);
      for (let i = 0; i < drop; i++) bytes -= store.opBytes(recent[i]!);
      while (drop < recent.length - 1 && bytes > opCacheBytes / 2) bytes -= store.opBytes(recent[drop++]!);
      recent.splice(0, drop);
    }
    this.#recentBytes.set(op.owner, bytes);
  }

  /**
   * An `ops` message of the first of `ops` that fit in `batchBytes` (at least one: a node's state
   * is held to maxNodeBytes, well below), and the seq of the last it holds.
   */
  #encodeOps(ops: Op[]): { bytes: Buffer; last: number } {
    const { batchBytes } = this.#options;
    let count = ops.length;
    for (;;) {
      const bytes = encodeMessage({ t: 'ops', ops: count === ops.length ? ops : ops.slice(0, count) });
      if (bytes.length <= batchBytes || count === 1) return { bytes, last: ops[count - 1]!.seq };
      count = Math.max(1, Math.floor((count * batchBytes) / bytes.length / 2));
    }
  }

  /** Ops of `owner` after `seq` up to `upTo`, a batch at most: from memory when recent, else the log. */
  #opsAfter(owner: string, seq: number, upTo: number): Op[] {
    const recent = this.#recentOps.get(owner);
    const first = recent?.[0]?.seq;
    if (recent && first !== undefined && seq + 1 >= first && recent[recent.length - 1]!.seq > seq) {
      const start = seq + 1 - first;
      return recent.slice(start, Math.min(start + this.#options.batchOps, upTo + 1 - first));
    }
    return this.#deps.store.opsAfter(owner, seq, this.#options.batchOps, upTo);
  }

  /** True when some direct peer should get `owner`'s ops from us. */
  #servesAnyone(owner: string): boolean {
    return owner === this.#deps.selfId || this.#servedPeers(owner).length > 0;
  }

  /**
   * The direct peers that should get `owner`'s ops from us, worked out again only when links
   * move: asked for every op a replica applies, and a mesh of 25 has 24 peers to ask about.
   */
  #servedPeers(owner: string): string[] {
    const version = this.#deps.mesh.linkVersion;
    if (version !== this.#servedVersion) {
      this.#servedTo.clear();
      this.#servedVersion = version;
    }
    let peers = this.#servedTo.get(owner);
    if (!peers) {
      peers = [...this.#cursors.keys()].filter((peer) => this.#serves(peer, owner));
      this.#servedTo.set(owner, peers);
    }
    return peers;
  }

  /** True when `peer` should get `owner`'s ops from us (see the module comment). */
  #serves(peer: string, owner: string): boolean {
    if (peer === owner) return this.#returning.has(peer);
    // Our ops would mix with the other history it is sending us back (`#mendFork`).
    if (owner === this.#deps.selfId && this.#fork?.peer === peer) return false;
    return owner === this.#deps.selfId || !this.#deps.mesh.linked(peer, owner);
  }

  #doneReturning(peer: string): void {
    if (this.#returning.delete(peer)) this.#servedTo.clear();
  }

  #sendSnapshot(
    peer: string,
    owner: string,
    nodes = this.#deps.store.ownerSnapshot(owner),
    seq = this.#vv.get(owner) ?? 0,
    hlc = this.#stampOf(owner, seq),
  ): void {
    this.#deps.metrics.snapshots.inc({ direction: 'sent' });
    // Chunks of SNAPSHOT_CHUNK nodes, or fewer when that many would not fit in `batchBytes`.
    type Shown = Omit<StoredNode, 'owner' | 'deleted' | 'updatedAt'>;
    let live: Shown[] = [];
    let deleted: Shown[] = [];
    let bytes = 0;
    const send = (last: boolean): void => {
      this.#deps.mesh.send(peer, {
        t: 'snap',
        owner,
        seq,
        nodes: live,
        ...(deleted.length > 0 ? { deleted } : {}),
        ...(hlc ? { hlc } : {}),
        last,
      });
      live = [];
      deleted = [];
      bytes = 0;
    };
    for (const { owner: _o, deleted: gone, updatedAt: _u, ...n } of nodes) {
      const size = Buffer.byteLength(JSON.stringify(n)) + 1;
      // (1 KiB is left for the message around the nodes.)
      const count = live.length + deleted.length;
      if (count > 0 && (count === SNAPSHOT_CHUNK || bytes + size > this.#options.batchBytes - 1024)) {
        send(false);
      }
      (gone ? deleted : live).push(n);
      bytes += size;
    }
    send(true);
  }

  #lagOf(peer: string, cursors: Map<string, number>): number {
    let lag = 0;
    for (const [owner, applied] of this.#vv) {
      if (this.#serves(peer, owner)) lag += Math.max(0, applied - (cursors.get(owner) ?? 0));
    }
    return lag;
  }

  /**
   * Our version vector as told to `peer`, with the stamps that let each end tell its numbering
   * from another copy's (`#checkOwnHistory`): of our own last op, and of the op of `peer`'s at
   * `yoursAt` (by default the last we hold). While a fork is mended with `peer`, our own entry
   * says how far our ops have come back from it, so that it sends them on from there.
   */
  #vectorFor(
    peer: string,
    yoursAt?: number,
    vv = this.versionVector(),
    mine = this.#stampOf(this.#deps.selfId, vv[this.#deps.selfId] ?? 0),
  ): LinkMessage {
    const { selfId } = this.#deps;
    const told = this.#fork?.peer === peer ? { ...vv, [selfId]: this.#fork.next - 1 } : vv;
    const seq = yoursAt ?? told[peer] ?? 0;
    const yours = this.#stampOf(peer, seq);
    return {
      t: 'vv',
      vv: told,
      ...(mine ? { mine } : {}),
      ...(yours ? { yours: { seq, hlc: yours } } : {}),
    };
  }

  /** The stamp of `owner`'s op `seq`: from the log, or kept for the last one applied here. */
  #stampOf(owner: string, seq: number): string | undefined {
    if (seq <= 0) return undefined;
    const { applied, headHlc } = this.#deps.store.ownerState(owner);
    if (seq === applied && headHlc !== undefined) return headHlc;
    const [op] = this.#opsAfter(owner, seq - 1, seq);
    return op?.seq === seq ? op.hlc : undefined;
  }

  /** Tells every neighbour what we have, so each sends what we lack. */
  #swapVectors(): void {
    // The vector and our own stamp are the same for every neighbour: made once.
    const vv = this.versionVector();
    const mine = this.#stampOf(this.#deps.selfId, vv[this.#deps.selfId] ?? 0);
    for (const peer of this.#deps.mesh.directPeers()) {
      this.#deps.mesh.send(peer, this.#vectorFor(peer, undefined, vv, mine));
    }
  }

  // --- Receiving ----------------------------------------------------------------------------

  #receiveOps(from: string, ops: Op[]): void {
    const { store, hlc } = this.#deps;
    const applied: Op[] = [];
    const ours: Op[] = [];
    let gap = false;
    try {
      store.applyPending(() => {
        for (const op of ops) {
          if (this.#deps.retired(op.owner)) continue; // From a peer that has not heard yet.
          if (op.owner === this.#deps.selfId && this.#fork) {
            ours.push(op); // Merged, not applied (`#receiveOwn`).
            continue;
          }
          this.#heard(op.owner, op.seq);
          hlc.receive(op.hlc);
          const result = store.applyOp(op);
          if (result === 'applied') {
            this.#vv.set(op.owner, op.seq);
            applied.push(op);
            this.#drainEarly(op.owner, applied);
          } else if (result === 'gap') {
            gap = true;
            this.#holdEarly(op);
          } else {
            this.#checkDuplicate(from, op);
          }
        }
      });
    } catch (err) {
      // None of the batch is stored (a savepoint): memory forgets it too, and gets it again.
      // (At the next anti-entropy swap, not at once: an op that fails every time would spin.)
      this.#deps.log.error({ err, from }, 'ops from a peer could not be applied; fetching them again later');
      this.#reloadVector();
      return;
    }
    if (applied.length > 0) this.#deps.metrics.opsApplied.inc({ source: 'remote' }, applied.length);
    this.#ownOpsBack();
    this.#commitSoon();
    if (gap) this.#requestGap(from);
    this.#afterApply(applied);
    if (ours.length > 0) this.#receiveOwn(from, ours);
  }

  // --- A fork of our own numbering -----------------------------------------------------------
  //
  // A server started on an older copy of its data (a backup put back after its SD card died)
  // while no server with its later ops was reachable numbers its writes on from its copy: under
  // the numbers of ops an earlier run of it made, which some servers still hold. Two histories
  // of one owner then share numbers, and every replica would keep whichever it got first. Every
  // version vector carries the stamps of the sender's last own op and of the last op it holds of
  // the receiver's (kept through compaction: Store.ownerState's headHlc), so the two ends of a
  // link find such ops when they meet. The owner then gets the other history back from that
  // peer, merges it node by node (the newer stamp wins, deletes included; readings of both are
  // kept), and moves its numbering past both histories with its log floor: every server behind
  // then gets a snapshot of its nodes, whichever history it had, and all end equal. Its own ops
  // below stay in the log for their stamps, so a holder of more of the other history, met
  // later, is found too, and merged the same way. Local writes are refused (503, retry)
  // meanwhile, as while an owner gets its own ops back after a start. A holder whose log no
  // longer reaches the fork sends a snapshot: a node of ours newer than any in it tells then.

  /**
   * `peer` holds our op `yours.seq` stamped `yours.hlc`, and our ops up to `upTo`: when we hold
   * that op under another stamp, our numbering forked.
   */
  #checkOwnHistory(peer: string, yours: { seq: number; hlc: string }, upTo: number): void {
    const held = this.#stampOf(this.#deps.selfId, yours.seq);
    if (held === undefined || held === yours.hlc) return;
    if (this.#mergedStamps.get(yours.seq) === yours.hlc && upTo <= this.#committed) return;
    this.#mendFork(peer, Math.max(upTo, yours.seq));
  }

  /**
   * `peer`'s own last op, `seq`, is stamped `mine`: when we hold it under another stamp, its
   * numbering forked, and it is told what we hold (it mends that: `#checkOwnHistory`).
   */
  #checkTheirHistory(peer: string, seq: number, mine: string): void {
    const held = this.#stampOf(peer, seq);
    if (held !== undefined && held !== mine) this.#deps.mesh.send(peer, this.#vectorFor(peer, seq));
  }

  /** `ask`: ask `peer` for what it holds of ours (not when a snapshot of it has come already). */
  #mendFork(peer: string, upTo: number, ask = true): void {
    const fork = this.#fork;
    if (fork) {
      if (fork.peer !== peer && upTo > fork.upTo && upTo > (this.#nextFork?.upTo ?? 0)) {
        this.#nextFork = { peer, upTo };
      }
      return;
    }
    this.#deps.metrics.forksMended.inc();
    this.#deps.log.warn(
      { peer, ours: this.#committed, theirs: upTo },
      'another copy of this server numbered changes alike (this one started on an older copy of its data while no server with its later changes was reachable): merging both, the newer change of each node winning, then numbering on after both; local writes are refused meanwhile',
    );
    // Where the two histories part is not known: everything the peer holds comes back, to merge.
    this.#fork = { peer, next: 1, upTo };
    this.#servedTo.clear(); // (`#serves` sends the peer nothing of ours meanwhile.)
    if (ask) this.#deps.mesh.send(peer, this.#vectorFor(peer));
  }

  /** Ops of ours from `from` while a fork is mended: merged, in turn. */
  #receiveOwn(from: string, ops: Op[]): void {
    const { store, hlc, selfId } = this.#deps;
    const merged: StoredNode[] = [];
    store.applyPending(() => {
      for (const op of ops) {
        this.#heard(selfId, op.seq);
        hlc.receive(op.hlc);
        const fork = this.#fork;
        // Out of turn (sent before our vector came) or from another peer: it comes again.
        if (!fork || fork.peer !== from || op.seq !== fork.next) continue;
        fork.next++;
        this.#mergedStamps.set(op.seq, op.hlc);
        if (this.#mergedStamps.size > MERGED_STAMPS) {
          this.#mergedStamps.delete(this.#mergedStamps.keys().next().value!);
        }
        const node = store.mergeState(selfId, op.node, { hlc: op.hlc, version: op.seq, kind: op.kind });
        if (node) merged.push(node);
      }
    });
    this.#commitSoon();
    for (const node of merged) this.#publishState(node);
    if (this.#fork && this.#fork.next > this.#fork.upTo) this.#endFork();
  }

  /** Tells the event streams a node's state as it now stands here (merged, or from a snapshot). */
  #publishState(node: StoredNode): void {
    this.#deps.events.publish({ type: 'node', op: node.deleted ? 'delete' : 'update', node: toApi(node) });
  }

  /**
   * A snapshot of our own nodes at `seq` from `from`, while a fork is mended, or when it shows
   * one: its sender no longer had the ops whose stamps would have told (compacted), but a node
   * of ours newer than any in it, deleted ones included, is a change it never had. Its nodes are
   * merged; a snapshot from the peer the fork is mended with, reaching as far as that peer's
   * history, ends the fork. Answers false when it is no concern of a fork.
   */
  #receiveOwnSnapshot(from: string, seq: number, nodes: StoredNode[]): boolean {
    const { store, selfId } = this.#deps;
    if (!this.#fork) {
      if (seq <= this.#committed) return false;
      let newest = '';
      for (const n of nodes) if (n.hlc > newest) newest = n.hlc;
      if (!store.ownerSnapshot(selfId).some((n) => n.hlc > newest)) return false;
      this.#mendFork(from, seq, false);
    }
    const fork = this.#fork!;
    const merged: StoredNode[] = [];
    store.applyPending(() => {
      for (const n of nodes) {
        const kind = n.deleted ? 'delete' : 'update';
        const node = store.mergeState(selfId, n, { hlc: n.hlc, version: n.version, kind });
        if (node) merged.push(node);
      }
    });
    this.#commitSoon();
    for (const node of merged) this.#publishState(node);
    if (from === fork.peer && seq >= fork.upTo) {
      fork.next = seq + 1;
      this.#endFork();
    }
    return true;
  }

  /**
   * Both histories are merged: our numbering moves past both, durably, with no op in between and
   * our log floor past it, so that every server behind gets a snapshot of our nodes as they are now.
   */
  #endFork(): void {
    const fork = this.#fork!;
    this.#fork = undefined;
    const { store, selfId } = this.#deps;
    const to = Math.max(this.#committed, fork.upTo) + 1;
    // The stamp of the skip stands for op `to` when peers compare what they hold of us.
    store.transaction('FULL', () => store.skipOwnerTo(selfId, to, this.#deps.hlc.now()));
    this.#committed = to;
    this.#vv.set(selfId, to);
    this.#heard(selfId, to);
    this.#recentOps.delete(selfId);
    this.#deps.log.warn(
      { merged: fork.upTo, numberingFrom: to + 1 },
      'merged the changes of another copy of this server; every server gets a snapshot of its nodes',
    );
    this.sweepOrphans();
    this.#servedTo.clear();
    const next = this.#nextFork;
    this.#nextFork = undefined;
    if (next && next.upTo > to) this.#mendFork(next.peer, next.upTo);
    this.#endHoldWhenCaughtUp();
    this.#wakeWritable();
    this.#swapVectors();
    this.#scheduleFlush();
  }

  /**
   * An op we hold under the same number with another stamp: its owner numbered two ops alike (an
   * older copy of its data started where no server with its later ops was reachable). Only the
   * first is applied here; said once per owner. The owner mends it (`#mendFork`) when it hears of
   * the other history from a neighbour's vector.
   */
  #checkDuplicate(from: string, op: Op): void {
    if (op.owner === this.#deps.selfId) {
      this.#checkOwnHistory(from, op, this.#heads.get(op.owner) ?? op.seq);
      return;
    }
    if (this.#reusedReported.has(op.owner)) return;
    const [held] = this.#deps.store.opsAfter(op.owner, op.seq - 1, 1, op.seq);
    if (!held || held.hlc === op.hlc) return;
    this.#reusedReported.add(op.owner);
    this.#deps.log.error(
      { owner: op.owner, seq: op.seq, held: held.hlc, received: op.hlc },
      'an owner numbered two different changes alike (a server restored from an older copy of its data while no server with its later changes was reachable): the later one is not applied here; the owner merges the two once it links to a server that holds the other, and sends every server a snapshot',
    );
  }

  /** Ops of ours came back from the mesh (see `#returning`): new ones are numbered after them. */
  #ownOpsBack(): void {
    const ours = this.#vv.get(this.#deps.selfId) ?? 0;
    if (ours > this.#committed) this.#committed = ours;
    this.#endHoldWhenCaughtUp();
    this.#wakeWritable();
  }

  /**
   * Replicated ops are committed together, `replicaCommitMs` after the first of them was applied
   * (they are visible here, sent on and evented at once). A crash before that loses only what
   * the mesh still has; the version vector read back at the restart fetches it again.
   */
  #commitSoon(): void {
    if (this.#options.replicaCommitMs === 0) {
      this.#deps.store.commitPending();
      return;
    }
    this.#replicaCommitTimer ??= setTimeout(() => {
      this.#replicaCommitTimer = undefined;
      this.#deps.store.commitPending();
    }, this.#options.replicaCommitMs);
  }

  /** The commit of replicated ops failed and they were rolled back: forget them, fetch again. */
  #forgetUncommitted(err: Error): void {
    this.#deps.log.error({ err }, 'commit of replicated ops failed; fetching them again');
    this.#reloadVector();
    this.#swapVectors();
  }

  /** Reads the version vector back from the store (what memory counted was rolled back there). */
  #reloadVector(): void {
    const { selfId, store } = this.#deps;
    const ours = this.#vv.get(selfId);
    this.#vv.clear();
    for (const [owner, seq] of Object.entries(store.versionVector())) this.#vv.set(owner, seq);
    // The store counts our commits still waiting for their fsync: we do not, yet. Nor do we count
    // ops of ours it rolled back (ours coming back from the mesh).
    const stored = store.ownerState(selfId).applied;
    if (ours === undefined) this.#vv.delete(selfId);
    else this.#vv.set(selfId, Math.min(ours, stored));
    this.#committed = Math.min(this.#committed, stored);
    this.#recentOps.clear();
  }

  #heard(owner: string, seq: number): void {
    if (seq <= (this.#heads.get(owner) ?? 0)) return;
    this.#heads.set(owner, seq);
    if (owner !== this.#deps.selfId || seq <= this.#committed || this.#fork) return;
    this.#deps.log.warn(
      { has: this.#committed, mesh: seq },
      'the mesh holds ops of ours this server lacks (an older copy of its data?): getting them back; new local writes wait',
    );
  }

  #holdEarly(op: Op): void {
    if (this.#earlyCount >= this.#options.maxPendingOps) return; // It will be sent again.
    let held = this.#early.get(op.owner);
    if (!held) {
      held = new Map();
      this.#early.set(op.owner, held);
    }
    if (!held.has(op.seq)) {
      held.set(op.seq, op);
      this.#earlyCount++;
    }
  }

  /** Applies held ops of `owner` that are now next in line. */
  #drainEarly(owner: string, applied: Op[]): void {
    const held = this.#early.get(owner);
    if (!held) return;
    for (;;) {
      const next = held.get((this.#vv.get(owner) ?? 0) + 1);
      if (!next) break;
      held.delete(next.seq);
      this.#earlyCount--;
      if (this.#deps.store.applyOp(next) !== 'applied') break;
      this.#vv.set(owner, next.seq);
      applied.push(next);
    }
    // Ops at or below what is applied are stale now.
    const floor = this.#vv.get(owner) ?? 0;
    for (const seq of held.keys()) {
      if (seq <= floor) {
        held.delete(seq);
        this.#earlyCount--;
      }
    }
    if (held.size === 0) this.#early.delete(owner);
  }

  /** Asks `from` for what we lack, at most once per GAP_REQUEST_MS; a request inside that window
   * is sent when it ends, so a gap never waits for the slow anti-entropy timer. */
  #requestGap(from: string): void {
    const now = this.#deps.clock.now();
    const wait = GAP_REQUEST_MS - (now - (this.#lastGapRequest.get(from) ?? 0));
    if (wait > 0) {
      if (!this.#gapTimers.has(from)) {
        const timer = setTimeout(() => {
          this.#gapTimers.delete(from);
          if (this.#running) this.#requestGap(from);
        }, wait);
        timer.unref();
        this.#gapTimers.set(from, timer);
      }
      return;
    }
    this.#lastGapRequest.set(from, now);
    this.#deps.mesh.send(from, this.#vectorFor(from));
  }

  #receiveSnapshot(from: string, message: Extract<LinkMessage, { t: 'snap' }>): void {
    const { owner, seq, last } = message;
    if (this.#deps.retired(owner)) return;
    // Chunks are gathered per sender: two neighbours may be sending one owner at once.
    const key = `${owner}/${from}`;
    let incoming = this.#incoming.get(key);
    if (!incoming || incoming.seq !== seq) {
      incoming = { seq, nodes: [] };
      this.#incoming.set(key, incoming);
    }
    incoming.nodes.push(...(message.nodes as StoredNode[]));
    for (const n of (message.deleted ?? []) as StoredNode[]) incoming.nodes.push({ ...n, deleted: true });
    if (!last) return;
    this.#incoming.delete(key);
    const nodes = incoming.nodes;
    if (owner === this.#deps.selfId && this.#receiveOwnSnapshot(from, seq, nodes)) return;
    if (seq <= (this.#vv.get(owner) ?? 0)) return; // Caught up some other way meanwhile.
    const { store } = this.#deps;
    // The readings of the ops it stands for are not in it: from the time of the last op we had
    // (or, its stamp not known, of the newest reading we hold).
    const had = store.ownerState(owner).headHlc;
    const since = (had === undefined ? undefined : wallOf(had)) ?? store.newestReading(owner) ?? 0;
    // The stamp of its op `seq` when the sender knew it, else the newest of its nodes'.
    let head = message.hlc ?? '';
    if (message.hlc === undefined) for (const n of nodes) if (n.hlc > head) head = n.hlc;
    const to = wallOf(head) ?? 0;
    // A point whose last change is the last op we had, or older, has no reading of that time.
    const changed = (n: StoredNode): boolean => had === undefined || n.hlc > had;
    // (A node twice in the chunks, from a snapshot sent again after a link dropped, is one task.)
    const ids = new Set(
      nodes.filter((n) => n.type === 'DataPoint' && !n.deleted && changed(n)).map((n) => n.id),
    );
    const tasks = [...ids].map((id) => ({ id, from: since, to, seq }));
    // The readings still to fetch are kept with the snapshot: a restart goes on with them.
    store.transaction('NORMAL', () => {
      store.replaceOwner(owner, seq, nodes, message.hlc);
      store.addBackfill(owner, tasks);
    });
    this.#vv.set(owner, seq);
    this.#ownOpsBack();
    this.#earlyCount -= this.#early.get(owner)?.size ?? 0;
    this.#early.delete(owner);
    this.#deps.metrics.snapshots.inc({ direction: 'received' });
    for (const node of nodes) {
      const stored = store.node(node.id);
      if (stored) this.#publishState(stored);
    }
    // Tombstones collected on the sender are not in it: nodes of ours under them go now.
    this.sweepOrphans();
    this.#wakeWaiters();
    this.#scheduleFlush();
    this.#backfill(owner, from, tasks);
  }

  // --- Readings a snapshot could not carry ----------------------------------------------------
  //
  // A snapshot at seq S carries an owner's nodes as they are, not the readings of the ops it stands
  // for: those after the last op of the owner this server had (at seq P, stamped at ms `since`) up
  // to S (stamped at ms `to`). Its ops before P have readings at `since` or before, its ops after S
  // at `to` or after. So it asks, for each of the owner's data points, for the readings from
  // `since` to `to`, and at `to` only those of ops up to S (each reading keeps the seq of its op);
  // at `since` it adds only those it does not hold (counted by value: one millisecond may hold
  // readings of ops before P and after it, alike). Pages come one at a time from one neighbour
  // (the owner when linked, else the snapshot's sender), so the asker sets the pace; a neighbour
  // that lacks some of them (it fetches them itself, or has not the ops) answers "later": another
  // that has the ops is asked at once, else this one again every second for half a minute, then
  // at each vector. Of two servers fetching the same readings from each other, the one with the
  // lower id answers with what it has. A backfill cut short by a link
  // goes on with the next neighbour that has the ops, from the millisecond it had reached. What is
  // still to fetch is stored with the snapshot and with each page, so a restart goes on with it.

  /** Fetches the readings `tasks` of a snapshot from `from` (the snapshot's sender) stand for. */
  #backfill(owner: string, from: string | undefined, tasks: ReadingsTask[]): void {
    const running = this.#backfills.get(owner);
    if (running) {
      // After the tasks of the earlier snapshot: their range ends where these begin.
      running.tasks.push(...tasks);
      return;
    }
    if (tasks.length === 0) return;
    const first = tasks[0]!;
    const b: Backfill = {
      tasks,
      next: first.from,
      skip: 0,
      held: new Map(),
      heldAt: first.from,
      peer: this.#readingsPeer(owner, tasks, from),
      ref: 0,
      laters: 0,
      timer: undefined,
    };
    this.#backfills.set(owner, b);
    this.#beginAt(b, first.next ?? first.from);
    this.#askReadings(owner, b);
  }

  /**
   * The neighbour to ask for the readings of `tasks`, of `owner`'s ops up to the last task's seq:
   * the owner when linked and it has them, else `rather` (the snapshot's sender, which has them),
   * else any that has them.
   */
  #readingsPeer(owner: string, tasks: ReadingsTask[], rather?: string): string | undefined {
    const seq = tasks[tasks.length - 1]!.seq;
    const has = (peer: string): boolean => (this.#cursors.get(peer)?.get(owner) ?? 0) >= seq;
    if (has(owner)) return owner;
    if (rather !== undefined && this.#cursors.has(rather)) return rather;
    for (const peer of this.#cursors.keys()) if (has(peer)) return peer;
    return undefined;
  }

  /**
   * Asks the neighbour `#readingsPeer` picks now (else the one asked so far, while linked), or
   * none until one that has the ops links. Another server's order of the readings of one
   * millisecond may differ: that millisecond is begun again, less what is here already.
   */
  #askElsewhere(owner: string, b: Backfill): void {
    const still = b.peer !== undefined && this.#cursors.has(b.peer) ? b.peer : undefined;
    const peer = this.#readingsPeer(owner, b.tasks) ?? still;
    if (peer !== b.peer) this.#beginAt(b, b.next);
    b.peer = peer;
    this.#askReadings(owner, b);
  }

  /**
   * Fetches the first task's readings from millisecond `at` on, less those held there now (of its
   * ops: those of later ops, come meanwhile, are not in the pages).
   */
  #beginAt(b: Backfill, at: number): void {
    const task = b.tasks[0]!;
    b.next = at;
    b.skip = 0;
    b.heldAt = at;
    b.held = this.#deps.store.valuesAt(task.id, at, task.seq);
  }

  #askReadings(owner: string, b: Backfill): void {
    if (b.peer === undefined) return;
    const task = b.tasks[0]!;
    b.ref = ++this.#readingsRef;
    clearTimeout(b.timer);
    b.timer = setTimeout(() => {
      this.#deps.log.warn(
        { owner, peer: b.peer, from: task.from, to: task.to },
        "a peer did not send the readings a snapshot could not carry: the owner's readings of that time are not all here",
      );
      this.#endBackfill(owner);
    }, READINGS_TIMEOUT_MS);
    b.timer.unref();
    const { id: node, to, seq } = task;
    this.#deps.mesh.send(b.peer, { t: 'rdq', ref: b.ref, owner, node, from: b.next, skip: b.skip, to, seq });
  }

  /** Ends `owner`'s backfill: given up (its stored tasks are forgotten), or done or stopped (`kept`). */
  #endBackfill(owner: string, kept = false): void {
    clearTimeout(this.#backfills.get(owner)?.timer);
    this.#backfills.delete(owner);
    if (kept) return;
    try {
      this.#deps.store.transaction('NORMAL', () => this.#deps.store.clearBackfill(owner));
    } catch (err) {
      this.#deps.log.error({ err, owner }, 'the readings still to fetch could not be forgotten');
    }
  }

  /**
   * A page of the readings asked for: none when the node is not `owner`'s data point here, and
   * "later" while this server lacks some of them (it has not applied the owner's ops up to the
   * seq asked, fetches the owner's readings itself, or mends a fork of its own).
   */
  #answerReadings(peer: string, ask: Extract<LinkMessage, { t: 'rdq' }>): void {
    const { ref, owner } = ask;
    const own = this.#backfills.get(owner);
    // Fetching readings of that point and time itself: but of two servers that wait on each other
    // for them, the one with the lower id answers with what it has, so neither waits for ever.
    const fetching =
      own?.tasks.some((t) => t.id === ask.node && ask.from <= t.to && t.from <= ask.to) === true &&
      !(own.peer === peer && this.#deps.selfId < peer);
    const lacking =
      fetching ||
      (this.#vv.get(owner) ?? 0) < ask.seq ||
      (owner === this.#deps.selfId && this.#fork !== undefined);
    if (lacking) {
      this.#deps.mesh.send(peer, { t: 'rd', ref, points: [], more: false, later: true });
      return;
    }
    const node = this.#deps.store.node(ask.node);
    const page =
      node?.owner === owner && node.type === 'DataPoint' && !node.deleted
        ? this.#deps.store.readingsPage(ask.node, ask, READINGS_PAGE, this.#options.batchBytes)
        : { points: [], more: false };
    this.#deps.mesh.send(peer, { t: 'rd', ref, ...page });
  }

  #receiveReadings(peer: string, page: Extract<LinkMessage, { t: 'rd' }>): void {
    const found = [...this.#backfills].find(([, b]) => b.ref === page.ref && b.peer === peer);
    if (!found) return; // Not the answer to the page asked for (a stale one, or from another peer).
    const [owner, b] = found;
    clearTimeout(b.timer);
    if (page.later) {
      // It lacks some of them itself: another neighbour that has the ops is asked at once; else
      // this one again every second, 30 times, then once at each vector (the anti-entropy round,
      // a link) until a page comes: no asking for ever of one that cannot answer.
      const other = this.#readingsPeer(owner, b.tasks);
      if (other !== undefined && other !== peer) {
        this.#askElsewhere(owner, b);
        return;
      }
      if (++b.laters > READINGS_RETRIES) {
        // Asked once more at each vector from now on, until a page comes.
        b.peer = undefined;
        return;
      }
      b.timer = setTimeout(() => this.#askElsewhere(owner, b), READINGS_RETRY_MS);
      b.timer.unref();
      return;
    }
    b.laters = 0;
    const { store, metrics, log } = this.#deps;
    const task = b.tasks[0]!;
    const points = page.points as Reading[];
    let t = b.next;
    for (const [at] of points) {
      if (at < t || at > task.to) {
        log.warn({ peer, owner, node: task.id }, 'a peer sent readings outside those asked for: none taken');
        this.#endBackfill(owner);
        return;
      }
      t = at;
    }
    // At the millisecond it began at, what was here already is not added again.
    const fresh = points.filter(([at, , value]) => {
      if (at !== b.heldAt) return true;
      const json = JSON.stringify(value ?? null);
      const held = b.held.get(json) ?? 0;
      if (held === 0) return true;
      b.held.set(json, held - 1);
      return false;
    });
    // On from the last reading's millisecond, when there are more.
    const lastAt = page.more ? points[points.length - 1]?.[0] : undefined;
    try {
      // With how far the task got: a restart goes on from that millisecond.
      store.transaction('NORMAL', () => {
        store.addReadings(task.id, fresh);
        store.backfillAt(owner, task, lastAt);
      });
    } catch (err) {
      log.error({ err, owner, node: task.id }, 'readings fetched after a snapshot could not be stored');
      this.#endBackfill(owner);
      return;
    }
    metrics.readingsBackfilled.inc(fresh.length);
    if (lastAt !== undefined) {
      // Past those of its millisecond taken so far.
      const atLast = points.filter(([at]) => at === lastAt).length;
      b.skip = lastAt === b.next ? b.skip + atLast : atLast;
      b.next = lastAt;
    } else {
      b.tasks.shift();
      if (b.tasks.length === 0) {
        this.#endBackfill(owner, true); // Its last row went with the page.
        return;
      }
      this.#beginAt(b, b.tasks[0]!.next ?? b.tasks[0]!.from);
    }
    this.#askReadings(owner, b);
  }

  // --- Forwarded writes ---------------------------------------------------------------------

  #forward(owner: string, req: WriteRequest): Promise<WriteOutcome> {
    const { mesh, selfId } = this.#deps;
    const hop = mesh.nextHop(owner);
    if (!hop) {
      this.#deps.metrics.forwardedWrites.inc({ result: 'unreachable' });
      return Promise.reject(
        new ShoalError('SHOAL_OWNER_UNREACHABLE', `the owner ${owner} is not reachable from here now`),
      );
    }
    const rid = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#forwarded.delete(rid);
        this.#deps.metrics.forwardedWrites.inc({ result: 'timeout' });
        reject(
          new ShoalError(
            'SHOAL_OWNER_UNREACHABLE',
            `the owner ${owner} did not answer within ${this.#options.forwardTimeoutMs} ms`,
          ),
        );
      }, this.#options.forwardTimeoutMs);
      this.#forwarded.set(rid, { owner, resolve, reject, timer });
      mesh.send(hop, { t: 'write', rid, from: selfId, to: owner, ttl: MAX_HOPS, req });
    });
  }

  #onWrite(message: Extract<LinkMessage, { t: 'write' }>): void {
    const { selfId } = this.#deps;
    if (message.to !== selfId) {
      this.#relay(message) ||
        this.#answer(message, new ShoalError('SHOAL_OWNER_UNREACHABLE', `no route to ${message.to}`));
      return;
    }
    let outcome = this.#recent.get(message.rid);
    if (!outcome) {
      outcome = this.#local(message.req, this.#options.forwardTimeoutMs / 2);
      // Kept for a retry of the same request without the node (a retry's asker reads its own
      // copy): thousands of large nodes held here filled a small heap. (Its rejection is the
      // retry's to see; it is marked handled here.)
      const kept = outcome.then((o) => ({ seq: o.seq, node: undefined }));
      kept.catch(() => {});
      this.#recent.set(message.rid, kept);
      if (this.#recent.size > RECENT_RESULTS) this.#recent.delete(this.#recent.keys().next().value!);
    }
    outcome.then(
      (o) => this.#answer(message, o),
      (err: unknown) =>
        this.#answer(message, err instanceof ShoalError ? err : new ShoalError('SHOAL_INTERNAL')),
    );
  }

  #answer(request: Extract<LinkMessage, { t: 'write' }>, outcome: WriteOutcome | ShoalError): void {
    const base = {
      t: 'wres' as const,
      rid: request.rid,
      from: this.#deps.selfId,
      to: request.from,
      ttl: MAX_HOPS,
    };
    const reply: Extract<LinkMessage, { t: 'wres' }> =
      outcome instanceof ShoalError
        ? { ...base, ok: false, error: { code: outcome.code, message: outcome.message } }
        : { ...base, ok: true, seq: outcome.seq, ...(outcome.node ? { node: outcome.node } : {}) };
    // The ops go out before the answer, so the asker usually has them when the answer arrives.
    this.#flush();
    this.#relay(reply);
  }

  /** Sends a routed message one hop on toward `to`; false when there is no route. */
  #relay(message: Extract<LinkMessage, { t: 'write' | 'wres' }>): boolean {
    if (message.ttl <= 0) return false;
    const hop = this.#deps.mesh.nextHop(message.to);
    return hop !== undefined && this.#deps.mesh.send(hop, { ...message, ttl: message.ttl - 1 });
  }

  #onWriteResult(message: Extract<LinkMessage, { t: 'wres' }>): void {
    if (message.to !== this.#deps.selfId) {
      this.#relay(message);
      return;
    }
    const pending = this.#forwarded.get(message.rid);
    if (!pending) return;
    this.#forwarded.delete(message.rid);
    clearTimeout(pending.timer);
    if (!message.ok) {
      this.#deps.metrics.forwardedWrites.inc({ result: 'refused' });
      const code = (message.error?.code ?? 'SHOAL_INTERNAL') as ErrorCode;
      pending.reject(new ShoalError(code in ERRORS ? code : 'SHOAL_INTERNAL', message.error?.message));
      return;
    }
    this.#deps.metrics.forwardedWrites.inc({ result: 'ok' });
    const seq = message.seq ?? 0;
    const node = message.node as ShoalNode | undefined;
    // Read-your-writes: answer once this replica has the op too (or soon, regardless).
    void this.#waitFor(pending.owner, seq, this.#options.forwardTimeoutMs).then(() => {
      const local = node ? this.#deps.store.node(node.id) : undefined;
      pending.resolve({
        node: local && !local.deleted && local.version >= (node?.version ?? 0) ? toApi(local) : node,
        seq,
      });
    });
  }

  #waitFor(owner: string, seq: number, timeoutMs: number): Promise<void> {
    if ((this.#vv.get(owner) ?? 0) >= seq) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = { owner, seq, resolve };
      this.#waiters.push(waiter);
      setTimeout(() => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve();
      }, timeoutMs).unref();
    });
  }

  #wakeWaiters(): void {
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const w = this.#waiters[i]!;
      if ((this.#vv.get(w.owner) ?? 0) >= w.seq) {
        this.#waiters.splice(i, 1);
        w.resolve();
      }
    }
  }
}

/** The answer to a write whose commit or fsync the disk failed. */
function unsure(err: Error): ShoalError {
  return new ShoalError(
    'SHOAL_DATA_DIR',
    `the disk did not confirm the write (${err.message}): it may or may not be stored`,
  );
}

/** A fresh copy of a node's state (callers may change it), made without a spread (see `apiNodeOf`). */
function stateOf(node: StoredNode): NodeState {
  const state: NodeState = {
    id: node.id,
    type: node.type,
    parent: node.parent,
    name: node.name,
    meta: node.meta,
  };
  if (node.value !== undefined) state.value = node.value;
  return state;
}
