/**
 * The durable store of a peer: the node tree, the op log of every owner, how far each owner's log
 * is applied here, and data point series, in one SQLite database (WAL mode) behind this small
 * interface.
 *
 * Invariants:
 * - An op and the node state it produces are written in the same transaction, so after a crash
 *   the node table and `owners.applied` always agree with the log.
 * - Ops of one owner are applied strictly in sequence order: `applyOp` refuses a gap, and an op
 *   at or below `applied` is a duplicate and changes nothing.
 * - The log of an owner holds every op from `log_floor` to `applied`; older ops were compacted
 *   away, and a peer that needs them gets a snapshot of the owner's nodes instead.
 *
 * Durability: a transaction commits with `synchronous=FULL` (an fsync of the write-ahead log
 * before `transaction` returns) or `NORMAL` (no fsync: lost in a power cut, not in a crash of the
 * process). Local writes commit with NORMAL and (with `storeSync` full) are made durable
 * afterwards by `syncLog`, which runs the same fsync in libuv's thread pool: the event loop goes
 * on meanwhile, and one fsync covers every commit made before it started (group commit).
 * Replicated ops commit with NORMAL and no `syncLog`: a replica that loses its last replicated
 * ops in a power cut fetches them again from the mesh. For the same reason they may be applied
 * in a transaction left open (`applyPending`) and committed together a little later
 * (`commitPending`): a commit costs more than applying a few ops.
 */

import { closeSync, fdatasync, fdatasyncSync, mkdirSync, openSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { hlcToIso, wallOf } from '../clock.ts';
import { ShoalError } from '../errors.ts';
import type { SavedPeer } from '../mesh/peer-table.ts';
import type { NodeType } from './node-types.ts';
import { MIGRATIONS } from './schema.ts';

/** A node as the API shows it. */
export interface ShoalNode {
  id: string;
  type: NodeType;
  parent: string | null;
  owner: string;
  name: string;
  meta: Record<string, unknown>;
  value?: unknown;
  updatedAt: string;
  /** The owner's op sequence number of the node's last change. */
  version: number;
}

/** The state of a node carried by an op: everything but what the op itself says. */
export interface NodeState {
  id: string;
  type: NodeType;
  parent: string | null;
  name: string;
  meta: Record<string, unknown>;
  value?: unknown;
}

export type OpKind = 'create' | 'update' | 'value' | 'delete';

/** One change by an owner: the node's whole state after it. */
export interface Op {
  owner: string;
  seq: number;
  hlc: string;
  kind: OpKind;
  node: NodeState;
}

export interface StoredNode extends ShoalNode {
  hlc: string;
  deleted: boolean;
}

/** A server retired from the mesh (src/replication/retirement.ts). */
export interface RetiredServer {
  id: string;
  name: string;
  /** The server that retired it, on an admin's word. */
  by: string;
  /** When, as an ISO 8601 UTC time. */
  at: string;
}

export interface NodeFilter {
  type?: string;
  owner?: string;
  parent?: string;
}

export interface SeriesPoint {
  t: number;
  value: unknown;
}

/** A reading as a backfill carries it: its time, the seq of its op (null when not known), its value. */
export type Reading = [t: number, seq: number | null, value: unknown];

interface NodeRow {
  id: string;
  type: string;
  parent: string | null;
  owner: string;
  name: string;
  meta: string;
  value: string | null;
  hlc: string;
  version: number;
  deleted: number;
}

export type ApplyResult = 'applied' | 'duplicate' | 'gap';

/** How far an owner's ops are held here. */
export interface OwnerState {
  applied: number;
  /** The lowest seq still in the log (ops below were compacted away). */
  logFloor: number;
  /** The stamp of op `applied`, when known (kept through compaction and snapshots). */
  headHlc: string | undefined;
}

export class Store {
  readonly #db: Database.Database;
  readonly #sql;
  #sync: 'FULL' | 'NORMAL' = 'FULL';
  /** `owners` rows, cached: read on every op applied and every send decision. */
  readonly #owners = new Map<string, OwnerState>();
  /** The size of each op applied here, as stored (`opBytes`), while the op is held anywhere. */
  readonly #opBytes = new WeakMap<Op, number>();
  /** The statements of `nodes()`, one per combination of filters, prepared on first use. */
  readonly #listings = new Map<string, Database.Statement<Record<string, string>, NodeRow>>();
  /** Owners whose `applied` changed in the running transaction, their rows not yet written. */
  readonly #dirtyOwners = new Set<string>();
  /** True while a transaction opened by `applyPending` waits for `commitPending`. */
  #pending = false;
  /** Told when ops applied by `applyPending` were rolled back because their commit failed. */
  onPendingLost: ((err: Error) => void) | undefined;
  /** Runs a function and `#withOwners` in a transaction, or a savepoint inside one (made once). */
  readonly #inTransaction: (fn: () => unknown) => unknown;
  /** A descriptor of the write-ahead log, for `syncLog` (none in memory). */
  #walFd: number | undefined;
  /** `syncLog` calls whose fsync has not returned yet; the log's descriptor outlives them. */
  #syncsInFlight = 0;
  /** How the last fsync at `close` went: what `syncLog` reports once the store is closed. */
  #syncAtClose: Error | null = null;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    let opened: Database.Database | undefined;
    try {
      this.#db = opened = new Database(file);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = FULL');
      this.#db.pragma('foreign_keys = OFF');
      this.#db.pragma('busy_timeout = 5000');
      migrate(this.#db);
      if (file !== ':memory:') {
        // Beside the real file, as SQLite puts it when the database file is a symlink; opened
        // for writing too (never written), since Windows flushes only such handles.
        this.#walFd = openSync(`${realpathSync(file)}-wal`, 'r+');
        // A previous run may have ended with commits still waiting for `syncLog`: they are
        // made durable now, before any of them is answered again or sent to a peer.
        fdatasyncSync(this.#walFd);
      }
    } catch (err) {
      this.#closeWal();
      opened?.close();
      throw new ShoalError('SHOAL_DATA_DIR', `store ${file}: ${(err as Error).message}`);
    }
    const db = this.#db;
    this.#inTransaction = db.transaction((fn: () => unknown) => this.#withOwners(fn));
    this.#sql = {
      node: db.prepare<[string], NodeRow>('SELECT * FROM nodes WHERE id = ?'),
      ownerOf: db.prepare<[string], string>('SELECT owner FROM nodes WHERE id = ? AND deleted = 0').pluck(),
      upsertNode: db.prepare(
        `INSERT INTO nodes (id, type, parent, owner, name, meta, value, hlc, version, deleted)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET type = excluded.type, parent = excluded.parent, owner = excluded.owner,
           name = excluded.name, meta = excluded.meta, value = excluded.value, hlc = excluded.hlc,
           version = excluded.version, deleted = excluded.deleted`,
      ),
      // A value op changes only value, hlc and version (the rest of the state it carries is the
      // row's already): an UPDATE that sets nothing indexed writes one page of the nodes table,
      // where the upsert rewrote the parent and owner index entries too.
      setValue: db.prepare(
        `UPDATE nodes SET value = ?, hlc = ?, version = ?
         WHERE id = ? AND owner = ? AND type = ? AND parent IS ? AND name = ? AND meta = ? AND deleted = 0`,
      ),
      insertOp: db.prepare('INSERT OR IGNORE INTO ops (owner, seq, body) VALUES (?, ?, ?)'),
      opsAfter: db.prepare<[string, number, number, number], { body: string }>(
        'SELECT body FROM ops WHERE owner = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?',
      ),
      owners: db.prepare<[], { owner: string; applied: number; log_floor: number; head_hlc: string | null }>(
        'SELECT * FROM owners',
      ),
      setApplied: db.prepare(
        `INSERT INTO owners (owner, applied, log_floor, head_hlc) VALUES (?, ?, ?, ?)
         ON CONFLICT (owner) DO UPDATE SET applied = excluded.applied, log_floor = excluded.log_floor,
           head_hlc = excluded.head_hlc`,
      ),
      ownerNodes: db.prepare<[string], NodeRow>('SELECT * FROM nodes WHERE owner = ? AND deleted = 0'),
      ownerAllNodes: db.prepare<[string], NodeRow>('SELECT * FROM nodes WHERE owner = ?'),
      deleteOwnerNodes: db.prepare('DELETE FROM nodes WHERE owner = ?'),
      deleteOwnerOps: db.prepare('DELETE FROM ops WHERE owner = ?'),
      retired: db.prepare<[], RetiredServer>('SELECT id, name, by, at FROM retired ORDER BY id'),
      knownPeers: db.prepare<[], { body: string }>('SELECT body FROM known_peers ORDER BY id'),
      clearKnownPeers: db.prepare('DELETE FROM known_peers'),
      saveKnownPeer: db.prepare('INSERT INTO known_peers (id, body) VALUES (?, ?)'),
      retire: db.prepare(
        `INSERT INTO retired (id, name, by, at) VALUES (@id, @name, @by, @at)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, by = excluded.by, at = excluded.at`,
      ),
      deleteOwnerSeries: db.prepare(
        'DELETE FROM series WHERE node_id IN (SELECT id FROM nodes WHERE owner = ?)',
      ),
      deleteOwner: db.prepare('DELETE FROM owners WHERE owner = ?'),
      insertPoint: db.prepare('INSERT INTO series (node_id, t, value, seq) VALUES (?, ?, ?, ?)'),
      insertPointOnce: db.prepare(
        `INSERT INTO series (node_id, t, value, seq) SELECT @id, @t, @value, @seq
         WHERE NOT EXISTS (
           SELECT 1 FROM series WHERE node_id = @id AND t = @t AND seq IS @seq AND value = @value)`,
      ),
      readings: db.prepare<
        [string, number, number, number, number],
        { t: number; seq: number | null; value: string }
      >(
        `SELECT t, seq, value FROM series WHERE node_id = ? AND t >= ? AND t <= ?
           AND (t < ? OR seq <= ?) ORDER BY t, rowid`,
      ),
      valuesAt: db.prepare<[string, number, number], { value: string }>(
        'SELECT value FROM series WHERE node_id = ? AND t = ? AND (seq IS NULL OR seq <= ?)',
      ),
      addBackfill: db.prepare(
        'INSERT OR IGNORE INTO backfill (owner, node_id, from_t, to_t, seq, next_t) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      backfill: db.prepare<
        [],
        { owner: string; id: string; from: number; to: number; seq: number; next: number }
      >(
        'SELECT owner, node_id AS id, from_t AS "from", to_t AS "to", seq, next_t AS next FROM backfill ORDER BY rowid',
      ),
      backfillAt: db.prepare('UPDATE backfill SET next_t = ? WHERE owner = ? AND node_id = ? AND seq = ?'),
      backfillDone: db.prepare('DELETE FROM backfill WHERE owner = ? AND node_id = ? AND seq = ?'),
      clearBackfill: db.prepare('DELETE FROM backfill WHERE owner = ?'),
      newestReading: db.prepare<[string], { t: number | null }>(
        'SELECT max(s.t) AS t FROM series s JOIN nodes n ON n.id = s.node_id WHERE n.owner = ?',
      ),
      series: db.prepare<[string, number, number, number], { t: number; value: string }>(
        'SELECT t, value FROM series WHERE node_id = ? AND t >= ? AND t <= ? ORDER BY t LIMIT ?',
      ),
      children: db.prepare<[string], { id: string }>('SELECT id FROM nodes WHERE parent = ? AND deleted = 0'),
      compactOps: db.prepare('DELETE FROM ops WHERE owner = ? AND seq < ?'),
      gcTombstones: db.prepare(
        `DELETE FROM nodes WHERE deleted = 1 AND hlc < ?
           AND version < COALESCE((SELECT log_floor FROM owners WHERE owners.owner = nodes.owner), 0)`,
      ),
      pruneSeries: db.prepare(
        `DELETE FROM series WHERE t < @now - COALESCE(
           (SELECT json_extract(meta, '$.retentionMs') FROM nodes WHERE nodes.id = series.node_id), @retention)`,
      ),
      liveNodes: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM nodes WHERE deleted = 0'),
      counts: db.prepare<[], { nodes: number; ops: number; points: number }>(
        `SELECT (SELECT COUNT(*) FROM nodes WHERE deleted = 0) AS nodes, (SELECT COUNT(*) FROM ops) AS ops,
                (SELECT COUNT(*) FROM series) AS points`,
      ),
    };
    this.#loadOwners();
  }

  #loadOwners(): void {
    this.#owners.clear();
    this.#dirtyOwners.clear();
    for (const r of this.#sql.owners.all()) {
      this.#owners.set(r.owner, {
        applied: r.applied,
        logFloor: r.log_floor,
        headHlc: r.head_hlc ?? undefined,
      });
    }
  }

  #setOwner(owner: string, state: OwnerState): void {
    this.#sql.setApplied.run(owner, state.applied, state.logFloor, state.headHlc ?? null);
    this.#owners.set(owner, state);
  }

  close(): void {
    if (!this.#db.open) return;
    this.commitPending();
    // Commits still waiting for `syncLog` are made durable here, and a failure is kept for it.
    if (this.#walFd !== undefined) {
      try {
        fdatasyncSync(this.#walFd);
      } catch (err) {
        this.#syncAtClose = err as Error;
      }
    }
    this.#db.close();
    // An fsync still running in the thread pool closes the descriptor when it returns.
    if (this.#syncsInFlight === 0) this.#closeWal();
  }

  /**
   * Makes every transaction committed so far durable, as `synchronous=FULL` would have at each
   * commit, without blocking the event loop: an fdatasync of the write-ahead log in libuv's thread
   * pool, then `done` (with the error when the disk refused, and nothing is known to be durable).
   * What the fsync covers is the log file, whichever descriptor it goes through; SQLite keeps
   * that file (it truncates or rewrites it, never replaces it) while its connection is open.
   * Commits made while it runs are covered by the next call. In memory there is nothing to sync;
   * once closed, the fsync `close` made answers. (A failure reaches this descriptor, not only
   * SQLite's, on Linux 4.13 and later.)
   */
  syncLog(done: (err: Error | null) => void): void {
    if (this.#walFd === undefined || !this.#db.open) {
      const closed = this.#syncAtClose;
      queueMicrotask(() => done(closed));
      return;
    }
    this.#syncsInFlight++;
    fdatasync(this.#walFd, (err) => {
      this.#syncsInFlight--;
      if (this.#syncsInFlight === 0 && !this.#db.open) this.#closeWal();
      done(err);
    });
  }

  #closeWal(): void {
    if (this.#walFd === undefined) return;
    closeSync(this.#walFd);
    this.#walFd = undefined;
  }

  /** Runs `fn` in one transaction; `sync` says how durable its commit is (see the module comment). */
  transaction<T>(sync: 'FULL' | 'NORMAL', fn: () => T): T {
    this.commitPending();
    this.#setSync(sync);
    try {
      return this.#inTransaction(fn) as T;
    } catch (err) {
      this.#loadOwners(); // Rolled back: the cache must forget what the transaction did.
      throw err;
    }
  }

  /** Runs `fn`, then writes the owners rows its ops changed (inside the same transaction). */
  #withOwners<T>(fn: () => T): T {
    const result = fn();
    for (const owner of this.#dirtyOwners) this.#setOwner(owner, this.#owners.get(owner)!);
    this.#dirtyOwners.clear();
    return result;
  }

  /**
   * Runs `fn` inside a transaction that stays open for more, to be committed (NORMAL) by
   * `commitPending`, or before any other transaction. Atomic all the same: when `fn` throws, its
   * own changes are rolled back (a savepoint) and what was pending before stays pending.
   */
  applyPending<T>(fn: () => T): T {
    if (!this.#pending) {
      this.#setSync('NORMAL');
      this.#db.exec('BEGIN');
      this.#pending = true;
    }
    try {
      return this.#inTransaction(fn) as T; // Inside BEGIN: a savepoint.
    } catch (err) {
      this.#loadOwners();
      throw err;
    }
  }

  /**
   * Commits what `applyPending` left open (never call it from inside that `fn`); false when the
   * commit failed (a full disk): then everything pending was rolled back, and `onPendingLost`
   * told, so that whoever applied those ops forgets them too and fetches them again.
   */
  commitPending(): boolean {
    if (!this.#pending) return true;
    this.#pending = false;
    try {
      this.#db.exec('COMMIT');
      return true;
    } catch (err) {
      if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
      this.#loadOwners();
      this.onPendingLost?.(err as Error);
      return false;
    }
  }

  /** Drops what `applyPending` left open, as a crash would (tests model crashes with it). */
  discardPending(): void {
    if (!this.#pending) return;
    this.#pending = false;
    this.#db.exec('ROLLBACK');
    this.#loadOwners();
  }

  #setSync(sync: 'FULL' | 'NORMAL'): void {
    if (sync === this.#sync) return;
    this.#db.pragma(`synchronous = ${sync}`);
    this.#sync = sync;
  }

  /** The owner of a live node, read without the rest of it (the routing of every write). */
  ownerOf(id: string): string | undefined {
    return this.#sql.ownerOf.get(id);
  }

  node(id: string): StoredNode | undefined {
    const row = this.#sql.node.get(id);
    return row && fromRow(row);
  }

  /**
   * Live nodes that hang, through live ancestors, from a root: a node under a deleted (or not yet
   * replicated) parent is not shown, so a deleted subtree disappears at once everywhere, even
   * before the owners of its parts have deleted them.
   */
  nodes(filter: NodeFilter = {}): ShoalNode[] {
    const where: string[] = [];
    const params: Record<string, string> = {};
    for (const key of ['type', 'owner', 'parent'] as const) {
      if (filter[key] !== undefined) {
        where.push(`n.${key} = @${key}`);
        params[key] = filter[key];
      }
    }
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    let listing = this.#listings.get(clause);
    if (!listing) {
      listing = this.#db.prepare<Record<string, string>, NodeRow>(
        `WITH RECURSIVE live (id) AS (
           SELECT id FROM nodes WHERE parent IS NULL AND deleted = 0
           UNION ALL
           SELECT c.id FROM nodes c JOIN live ON c.parent = live.id WHERE c.deleted = 0
         )
         SELECT n.* FROM nodes n JOIN live ON live.id = n.id
         ${clause}
         ORDER BY n.type, n.name, n.id`,
      );
      this.#listings.set(clause, listing);
    }
    const rows = listing.all(params);
    return rows.map(apiFromRow);
  }

  /** A live node whose every ancestor is live, or undefined. */
  visibleNode(id: string): StoredNode | undefined {
    const node = this.node(id);
    if (!node || node.deleted) return undefined;
    let parent = node.parent;
    for (let depth = 0; parent !== null; depth++) {
      const up = this.node(parent);
      if (!up || up.deleted || depth > 64) return undefined;
      parent = up.parent;
    }
    return node;
  }

  childIds(id: string): string[] {
    return this.#sql.children.all(id).map((r) => r.id);
  }

  /** How far each owner's ops are applied here: the version vector. */
  versionVector(): Record<string, number> {
    return Object.fromEntries([...this.#owners].map(([owner, s]) => [owner, s.applied]));
  }

  /** The applied seq, the lowest seq still in the log, and the last op's stamp, of an owner. */
  ownerState(owner: string): OwnerState {
    return this.#owners.get(owner) ?? { applied: 0, logFloor: 1, headHlc: undefined };
  }

  /**
   * Applies one op (in the caller's transaction, else in one of its own): stores it in the log
   * and the node state it carries. 'duplicate' when it was applied before, 'gap' when an earlier
   * op of its owner is missing.
   */
  applyOp(op: Op): ApplyResult {
    const { applied, logFloor } = this.ownerState(op.owner);
    if (op.seq <= applied) return 'duplicate';
    if (op.seq !== applied + 1) return 'gap';
    // The owners row is written once at the end of a transaction (#withOwners), not once per op:
    // an op on its own gets a transaction of its own.
    if (!this.#db.inTransaction) return this.transaction('FULL', () => this.applyOp(op));
    const body = JSON.stringify(op);
    this.#sql.insertOp.run(op.owner, op.seq, body);
    this.#opBytes.set(op, body.length);
    this.#owners.set(op.owner, { applied: op.seq, logFloor, headHlc: op.hlc });
    this.#dirtyOwners.add(op.owner);
    const n = op.node;
    const meta = JSON.stringify(n.meta);
    const value = n.value === undefined ? null : JSON.stringify(n.value);
    // Any other op, or a value op whose node is not there as its state says (not in sequence
    // order, but an op carries the node's whole state, and that state wins): the full upsert.
    const narrow =
      op.kind === 'value' &&
      this.#sql.setValue.run(value, op.hlc, op.seq, n.id, op.owner, n.type, n.parent, n.name, meta)
        .changes === 1;
    if (!narrow) {
      this.#sql.upsertNode.run(
        n.id,
        n.type,
        n.parent,
        op.owner,
        n.name,
        meta,
        value,
        op.hlc,
        op.seq,
        op.kind === 'delete' ? 1 : 0,
      );
    }
    // A value given at creation is a reading too.
    if ((op.kind === 'value' || (op.kind === 'create' && n.value !== undefined)) && n.type === 'DataPoint') {
      this.#sql.insertPoint.run(n.id, wallOf(op.hlc) ?? 0, value ?? 'null', op.seq);
    }
    return 'applied';
  }

  /**
   * Merges a state of one of `owner`'s nodes from another history of the owner's numbering (a
   * fork: see replicator.ts `#mendFork`), inside a transaction: it replaces what is held only when
   * its stamp is newer, and the reading it carries joins the series unless held already. The log
   * is left alone. Answers the node when the state won.
   */
  mergeState(
    owner: string,
    n: NodeState,
    change: { hlc: string; version: number; kind: OpKind },
  ): StoredNode | undefined {
    const reading = change.kind === 'value' || (change.kind === 'create' && n.value !== undefined);
    if (reading && n.type === 'DataPoint') {
      const value = JSON.stringify(n.value ?? null);
      this.#sql.insertPointOnce.run({ id: n.id, t: wallOf(change.hlc) ?? 0, value, seq: change.version });
    }
    const held = this.node(n.id);
    if (held && (held.owner !== owner || held.hlc >= change.hlc)) return undefined;
    this.#putNode(owner, n, change.hlc, change.version, change.kind === 'delete');
    return this.node(n.id);
  }

  /** Writes a node's whole state as given (no op, no reading). */
  #putNode(owner: string, n: NodeState, hlc: string, version: number, deleted: boolean): void {
    this.#sql.upsertNode.run(
      n.id,
      n.type,
      n.parent,
      owner,
      n.name,
      JSON.stringify(n.meta),
      n.value === undefined ? null : JSON.stringify(n.value),
      hlc,
      version,
      deleted ? 1 : 0,
    );
  }

  /**
   * Moves `owner`'s numbering on to `seq`, stamped `hlc`, with no op in between (inside a
   * transaction), and its log floor past it, so that every peer behind gets a snapshot of its
   * nodes (see replicator.ts `#mendFork`). The ops below stay until compaction takes them: their
   * stamps still tell this history from another.
   */
  skipOwnerTo(owner: string, seq: number, hlc: string): void {
    this.#setOwner(owner, { applied: seq, logFloor: seq + 1, headHlc: hlc });
    this.#dirtyOwners.delete(owner);
  }

  /** The peers saved by `saveKnownPeers`. A row that does not parse is skipped. */
  knownPeers(): SavedPeer[] {
    return this.#sql.knownPeers.all().flatMap((row) => {
      try {
        return [JSON.parse(row.body) as SavedPeer];
      } catch {
        return [];
      }
    });
  }

  /** Replaces the saved peers by `peers` (in a transaction of its own). */
  saveKnownPeers(peers: SavedPeer[]): void {
    this.transaction('NORMAL', () => {
      this.#sql.clearKnownPeers.run();
      for (const peer of peers) this.#sql.saveKnownPeer.run(peer.record.id, JSON.stringify(peer));
    });
  }

  /** About how many bytes `op` takes (its stored JSON, when it was applied here). */
  opBytes(op: Op): number {
    return this.#opBytes.get(op) ?? JSON.stringify(op).length;
  }

  /** The servers retired from the mesh, by id. */
  retiredServers(): RetiredServer[] {
    return this.#sql.retired.all();
  }

  /**
   * Records a retired server and deletes everything of it (inside a transaction): its nodes,
   * live or not, their series, its op log and how far it was applied. Answers the live nodes
   * deleted. Another record of a server retired before replaces the first; nothing is left to
   * delete then.
   */
  retireServer(record: RetiredServer): StoredNode[] {
    const owner = record.id;
    this.#sql.retire.run(record);
    const removed = this.ownerNodes(owner);
    this.#sql.deleteOwnerSeries.run(owner);
    this.#sql.deleteOwnerNodes.run(owner);
    this.#sql.deleteOwnerOps.run(owner);
    this.#sql.deleteOwner.run(owner);
    this.#sql.clearBackfill.run(owner);
    this.#owners.delete(owner);
    this.#dirtyOwners.delete(owner);
    return removed;
  }

  /** Ops of `owner` after `afterSeq` and up to `upTo`, oldest first, at most `limit`. */
  opsAfter(owner: string, afterSeq: number, limit: number, upTo = Number.MAX_SAFE_INTEGER): Op[] {
    return this.#sql.opsAfter.all(owner, afterSeq, upTo, limit).map((r) => JSON.parse(r.body) as Op);
  }

  /** The live nodes of an owner, for a snapshot. */
  ownerNodes(owner: string): StoredNode[] {
    return this.#sql.ownerNodes.all(owner).map(fromRow);
  }

  /** An owner's nodes for a snapshot: the live ones and the deleted ones not yet collected. */
  ownerSnapshot(owner: string): StoredNode[] {
    return this.#sql.ownerAllNodes.all(owner).map(fromRow);
  }

  /**
   * Replaces everything held of `owner` by a snapshot of its nodes at `seq`, deleted ones
   * included when the sender sent them, and the stamp of op `seq` when known (inside a
   * transaction). Used when the ops this peer lacks were compacted away on the sender.
   */
  replaceOwner(owner: string, seq: number, nodes: StoredNode[], headHlc?: string): void {
    this.#sql.deleteOwnerNodes.run(owner);
    this.#sql.deleteOwnerOps.run(owner);
    for (const n of nodes) this.#putNode(owner, n, n.hlc, n.version, n.deleted === true);
    this.#setOwner(owner, { applied: seq, logFloor: seq + 1, headHlc });
  }

  /**
   * Adds readings of data point `id` that came apart from their ops (a snapshot's backfill): each
   * [t, seq, value], as its owner numbered it.
   */
  addReadings(id: string, points: Reading[]): void {
    for (const [t, seq, value] of points)
      this.#sql.insertPoint.run(id, t, JSON.stringify(value ?? null), seq);
  }

  /**
   * The readings still to fetch after snapshots (replicator.ts "Readings a snapshot could not
   * carry"), in the order they are fetched: each owner's data point `id`, from `from` to `to` (ms),
   * at `to` those of ops up to `seq`, reached `next` so far.
   */
  backfill(): { owner: string; id: string; from: number; to: number; seq: number; next: number }[] {
    return this.#sql.backfill.all();
  }

  /** Adds readings to fetch (in the caller's transaction, with the snapshot they come from). */
  addBackfill(owner: string, tasks: { id: string; from: number; to: number; seq: number }[]): void {
    for (const t of tasks) this.#sql.addBackfill.run(owner, t.id, t.from, t.to, t.seq, t.from);
  }

  /** A backfill task reached millisecond `next`, or (`next` undefined) is done. */
  backfillAt(owner: string, task: { id: string; seq: number }, next: number | undefined): void {
    if (next === undefined) this.#sql.backfillDone.run(owner, task.id, task.seq);
    else this.#sql.backfillAt.run(next, owner, task.id, task.seq);
  }

  /** Forgets every reading still to fetch of `owner`. */
  clearBackfill(owner: string): void {
    this.#sql.clearBackfill.run(owner);
  }

  /** The time of the newest reading held of `owner`'s data points. */
  newestReading(owner: string): number | undefined {
    return this.#sql.newestReading.get(owner)?.t ?? undefined;
  }

  /**
   * How many readings of data point `id` at millisecond `t`, of its owner's ops up to `seq` (or of
   * ops not known), the series holds, by value (as JSON).
   */
  valuesAt(id: string, t: number, seq: number): Map<string, number> {
    const counts = new Map<string, number>();
    for (const { value } of this.#sql.valuesAt.iterate(id, t, seq)) {
      counts.set(value, (counts.get(value) ?? 0) + 1);
    }
    return counts;
  }

  /**
   * A page of data point `id`'s readings from `from` to `to` (ms, both included), oldest first,
   * less the first `skip` of those at `from`, and at `to` only those of ops up to `seq` (the
   * later ones go with their ops): at most `limit`, and `maxBytes` as sent (but one at least).
   * Readings of one millisecond keep their order from page to page (the order they were added
   * in), so a page may stop inside one; `more` when the range holds more.
   */
  readingsPage(
    id: string,
    range: { from: number; skip: number; to: number; seq: number },
    limit: number,
    maxBytes: number,
  ): { points: Reading[]; more: boolean } {
    const points: Reading[] = [];
    let skipped = 0;
    let bytes = 0;
    for (const row of this.#sql.readings.iterate(id, range.from, range.to, range.to, range.seq)) {
      if (row.t === range.from && skipped < range.skip) {
        skipped++;
        continue;
      }
      // As sent: [t,seq,value], with room for a 16-digit t and seq.
      bytes += Buffer.byteLength(row.value) + 40;
      if (points.length > 0 && (points.length === limit || bytes > maxBytes)) return { points, more: true };
      points.push([row.t, row.seq, JSON.parse(row.value)]);
    }
    return { points, more: false };
  }

  series(id: string, from: number, to: number, limit: number): SeriesPoint[] {
    return this.#sql.series.all(id, from, to, limit).map((r) => ({ t: r.t, value: JSON.parse(r.value) }));
  }

  /**
   * A page of a series: at most `limit` points, and no more than `maxBytes` of values as JSON
   * (but one point at least); `more` when points in the range were left out. A page that stops
   * early ends at a whole millisecond, so that the next, from the millisecond after its last
   * point, misses nothing: points sharing the millisecond it would have cut are left to the next
   * page, or, when the page is that one millisecond, all taken (past `limit`).
   */
  seriesPage(
    id: string,
    from: number,
    to: number,
    limit: number,
    maxBytes: number,
  ): { points: SeriesPoint[]; more: boolean } {
    const points: SeriesPoint[] = [];
    let bytes = 0;
    let full = false;
    for (const row of this.#sql.series.iterate(id, from, to, Number.MAX_SAFE_INTEGER)) {
      bytes += Buffer.byteLength(row.value);
      full ||= points.length === limit || (points.length > 0 && bytes > maxBytes);
      if (full) {
        const last = points[points.length - 1]!.t;
        if (row.t === last) {
          if (points[0]!.t === last) {
            points.push({ t: row.t, value: JSON.parse(row.value) }); // One millisecond: all of it.
            continue;
          }
          while (points[points.length - 1]!.t === last) points.pop();
        }
        return { points, more: true };
      }
      points.push({ t: row.t, value: JSON.parse(row.value) });
    }
    return { points, more: false };
  }

  /** Drops ops of each owner beyond the newest `keep`, raising its log floor. */
  compactLog(keep: number): number {
    let removed = 0;
    this.transaction('NORMAL', () => {
      for (const [owner, state] of [...this.#owners]) {
        const floor = state.applied - keep + 1;
        if (floor <= state.logFloor) continue;
        removed += this.#sql.compactOps.run(owner, floor).changes;
        this.#setOwner(owner, { ...state, logFloor: floor });
      }
    });
    return removed;
  }

  /** Forgets tombstones older than `beforeHlc` whose op has left the log (snapshots cover them). */
  collectTombstones(beforeHlc: string): number {
    return this.transaction('NORMAL', () => this.#sql.gcTombstones.run(beforeHlc).changes);
  }

  /** Drops series values older than their data point's retention (or the default one). */
  pruneSeries(nowMs: number, defaultRetentionMs: number): number {
    return this.transaction(
      'NORMAL',
      () => this.#sql.pruneSeries.run({ now: nowMs, retention: defaultRetentionMs }).changes,
    );
  }

  apiKeys(): { id: string; name: string; scope: 'admin' | 'read'; digest: string; createdAt: string }[] {
    return this.#db
      .prepare<[], { id: string; name: string; scope: 'admin' | 'read'; digest: string; created_at: string }>(
        'SELECT * FROM api_keys ORDER BY created_at',
      )
      .all()
      .map(({ created_at, ...r }) => ({ ...r, createdAt: created_at }));
  }

  // Keys are made and revoked in transactions of their own, durable before the API answers:
  // never inside replicated ops left pending (applyPending), which a failed commit rolls back.
  insertApiKey(k: { id: string; name: string; scope: string; digest: string; createdAt: string }): void {
    this.transaction('FULL', () =>
      this.#db
        .prepare('INSERT INTO api_keys (id, name, scope, digest, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(k.id, k.name, k.scope, k.digest, k.createdAt),
    );
  }

  deleteApiKey(id: string): boolean {
    return this.transaction(
      'FULL',
      () => this.#db.prepare('DELETE FROM api_keys WHERE id = ?').run(id).changes > 0,
    );
  }

  /** Bytes of the database's pages (the write-ahead log comes on top until a checkpoint). */
  sizeBytes(): number {
    const page = this.#db.pragma('page_size', { simple: true }) as number;
    const pages = this.#db.pragma('page_count', { simple: true }) as number;
    return page * pages;
  }

  /** Live nodes (for the metrics: cheaper than `counts`, which also counts ops and readings). */
  liveNodes(): number {
    return this.#sql.liveNodes.get()!.n;
  }

  counts(): { nodes: number; ops: number; points: number } {
    return this.#sql.counts.get()!;
  }
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new Error(
      `the database is of a newer shoal (schema ${version}; this one knows ${MIGRATIONS.length})`,
    );
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

function fromRow(row: NodeRow): StoredNode {
  const node = apiFromRow(row) as StoredNode;
  node.hlc = row.hlc;
  node.deleted = row.deleted === 1;
  return node;
}

/** The API's view of a row: what `toApi(fromRow(row))` gives, without the copy (see `apiNodeOf`). */
function apiFromRow(row: NodeRow): ShoalNode {
  const { id, parent, owner, name, version } = row;
  const type = row.type as NodeType;
  const meta = JSON.parse(row.meta) as Record<string, unknown>;
  const updatedAt = hlcToIso(row.hlc);
  return row.value === null
    ? { id, type, parent, owner, name, meta, updatedAt, version }
    : { id, type, parent, owner, name, meta, value: JSON.parse(row.value), updatedAt, version };
}

/**
 * The API's view of the node an op leaves, built field by field. Every replicated op makes one
 * for its event; the generic copies it replaced (a spread of the op's node, then a rest without
 * hlc and deleted) cost more CPU than the SQLite upsert, and their objects were found only by
 * major GCs (sampling heap profile of a replica at 1,000 ops/s). Hence no spreads on hot paths.
 */
export function apiNodeOf(op: Op): ShoalNode {
  const { id, type, parent, name, meta, value } = op.node;
  const { owner, seq: version } = op;
  const updatedAt = hlcToIso(op.hlc);
  return value === undefined
    ? { id, type, parent, owner, name, meta, updatedAt, version }
    : { id, type, parent, owner, name, meta, value, updatedAt, version };
}

/** The API's view of a stored node. */
export function toApi(node: StoredNode): ShoalNode {
  const { hlc: _hlc, deleted: _deleted, ...rest } = node;
  return rest;
}
