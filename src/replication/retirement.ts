/**
 * Retiring a server that is gone for good (a dead SD card, no backup): only an owner changes its
 * nodes, so without this the nodes of a dead server would stay on every dashboard for ever, and
 * no one could delete them.
 *
 * An admin asks any server to retire another (`DELETE /api/v1/peers/:id`, `shoal forget`). That
 * server makes a record (who, by whom, when), and from then on the record is a fact of the mesh:
 * - every server deletes the retired server's nodes (and so, by the usual cascade, nodes of its
 *   own under them), its op log and its series, and ignores ops of it that still arrive;
 * - every server refuses links from the retired id (handshakes rejected, reason `retired`), so a
 *   copy of it put back later cannot bring its nodes back: it must join with a fresh data
 *   directory, as a new server;
 * - the records form a grow-only set, merged by union (`mergeRetired`), sent whole at the start of
 *   every link and flooded when one is new, so every server, also one away at the time, ends with
 *   the same set. Two records of one server (retired twice, in two halves of a partition) settle
 *   on the same one everywhere: the earlier, then the lower `by`.
 *
 * A server that is connected cannot be retired: retirement is for the dead, and refusing a live
 * one keeps an admin's slip from cutting a working server out of the mesh.
 */

import { ShoalError } from '../errors.ts';
import type { EventBus } from '../events.ts';
import type { LinkMessage } from '../link/messages.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { type RetiredServer, type Store, toApi } from '../store/store.ts';

/** Of two records of one server, the one every server keeps: the earlier, then the lower `by`. */
export function winner(a: RetiredServer, b: RetiredServer): RetiredServer {
  if (a.at !== b.at) return a.at < b.at ? a : b;
  if (a.by !== b.by) return a.by < b.by ? a : b;
  return a.name <= b.name ? a : b;
}

/** The union of two sets of records (one per server, the `winner`), ordered by id. */
export function mergeRetired(a: readonly RetiredServer[], b: readonly RetiredServer[]): RetiredServer[] {
  const byId = new Map<string, RetiredServer>();
  for (const record of [...a, ...b]) {
    const held = byId.get(record.id);
    byId.set(record.id, held ? winner(held, record) : record);
  }
  return [...byId.values()].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

/** What retirement needs of the mesh. */
export interface RetirementMesh {
  send(peerId: string, message: LinkMessage): boolean;
  directPeers(): string[];
  /** Drops the peer and its links, and refuses it from now on. */
  retire(record: RetiredServer): void;
  /** This server was retired: every server refuses it, so it stops dialling them. */
  retiredSelf(): void;
  /** The peer's state and name as the peer table has them, if it knows the peer. */
  peer(id: string): { state: 'connected' | 'connecting' | 'disconnected'; name: string } | undefined;
}

export interface RetirementDeps {
  selfId: string;
  store: Store;
  mesh: RetirementMesh;
  /** Forgets what replication holds in memory of an owner, and deletes nodes of ours left under
   * nodes that are gone (Replicator.forgetOwner, sweepOrphans). */
  replication: { forgetOwner(owner: string): void; sweepOrphans(): void };
  events: EventBus;
  metrics: Metrics;
  log: Logger;
  /** The wall clock, for the record's time. */
  now: () => number;
  /** Stops this server's beacons, once it is retired itself: every server ignores them now. */
  stopBeacons: () => void;
}

/** Records per `retired` message (a message may carry 4096: messages.ts). */
const RECORDS_PER_MESSAGE = 1000;

export class Retirements {
  readonly #deps: RetirementDeps;
  readonly #held = new Map<string, RetiredServer>();
  /** Said once: the mesh has retired this server itself. */
  #toldSelf = false;

  constructor(deps: RetirementDeps) {
    this.#deps = deps;
    for (const record of deps.store.retiredServers()) {
      this.#held.set(record.id, record);
      deps.mesh.retire(record);
    }
    deps.metrics.gauge('shoal_retired_servers', 'Servers retired from the mesh.', [], () => [
      [{}, this.#held.size],
    ]);
  }

  has(id: string): boolean {
    return this.#held.has(id);
  }

  list(): RetiredServer[] {
    return [...this.#held.values()];
  }

  /**
   * Retires server `id` on an admin's word: see the module comment. Answers the record (the one
   * held already when it was retired before) and how many live nodes of it were deleted here.
   */
  retire(id: string): { retired: RetiredServer; removedNodes: number } {
    const { selfId, mesh, store } = this.#deps;
    const held = this.#held.get(id);
    if (held) return { retired: held, removedNodes: 0 };
    if (id === selfId) throw new ShoalError('SHOAL_BAD_REQUEST', 'a server cannot retire itself');
    const peer = mesh.peer(id);
    // A server is known by the peer table, by its own Server node, or by ops of its own here.
    const server = store.node(id);
    const serverNode = server?.type === 'Server' && server.owner === id ? server : undefined;
    if (!peer && !serverNode && store.ownerState(id).applied === 0) {
      throw new ShoalError('SHOAL_NOT_FOUND', `no server ${id} is known here`);
    }
    const name = peer?.name || serverNode?.name || '';
    if (peer?.state === 'connected') {
      throw new ShoalError(
        'SHOAL_CONFLICT',
        `server ${name || id} is connected: only a server that is gone for good can be retired (stop it first)`,
      );
    }
    const record: RetiredServer = {
      id,
      name,
      by: selfId,
      at: new Date(this.#deps.now()).toISOString(),
    };
    const removedNodes = this.#apply(record);
    this.#deps.log.warn(
      { server: id, name, removedNodes },
      'server retired from the mesh on an admin request: its nodes are deleted everywhere, and it is refused from now on',
    );
    this.#flood([record]);
    return { retired: record, removedNodes };
  }

  /** A new link: the other end gets every record held (before anything else of ours). */
  linkUp(peerId: string): void {
    const records = this.list();
    for (let i = 0; i < records.length; i += RECORDS_PER_MESSAGE) {
      this.#deps.mesh.send(peerId, { t: 'retired', records: records.slice(i, i + RECORDS_PER_MESSAGE) });
    }
  }

  /** Records from a direct peer: the new ones are applied and passed on. */
  receive(from: string, records: readonly RetiredServer[]): void {
    const fresh: RetiredServer[] = [];
    for (const record of records) {
      if (record.id === this.#deps.selfId) {
        this.#retiredSelf(record);
        continue;
      }
      const held = this.#held.get(record.id);
      if (held && winner(held, record) === held) continue;
      if (held) {
        // Retired twice (in two halves of a partition): the effects are there already.
        this.#held.set(record.id, record);
        this.#deps.store.transaction('FULL', () => this.#deps.store.retireServer(record));
      } else {
        const removedNodes = this.#apply(record);
        this.#deps.log.warn(
          { server: record.id, name: record.name, by: record.by, at: record.at, removedNodes },
          'server retired from the mesh: its nodes are deleted, and it is refused from now on',
        );
      }
      fresh.push(record);
    }
    if (fresh.length > 0) this.#flood(fresh, from);
  }

  /** Stores the record and carries out what it means here; answers the live nodes deleted. */
  #apply(record: RetiredServer): number {
    const { store, mesh, replication, events } = this.#deps;
    this.#held.set(record.id, record);
    const removed = store.transaction('FULL', () => store.retireServer(record));
    replication.forgetOwner(record.id);
    mesh.retire(record);
    for (const node of removed) events.publish({ type: 'node', op: 'delete', node: toApi(node) });
    events.publish({ type: 'retired', server: record });
    replication.sweepOrphans();
    return removed.length;
  }

  #flood(records: RetiredServer[], from?: string): void {
    for (const peer of this.#deps.mesh.directPeers()) {
      if (peer !== from) this.#deps.mesh.send(peer, { t: 'retired', records });
    }
  }

  #retiredSelf(record: RetiredServer): void {
    if (this.#toldSelf) return;
    this.#toldSelf = true;
    this.#deps.mesh.retiredSelf();
    this.#deps.stopBeacons();
    this.#deps.log.error(
      { by: record.by, at: record.at },
      'the mesh has retired this server (an admin said it was gone for good): every other server refuses it and has deleted its nodes. To join again, start it on a fresh data directory (shoal init), as a new server',
    );
  }
}
