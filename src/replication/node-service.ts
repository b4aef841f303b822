/**
 * The node operations of the API, the stream and the CLI: reads come from this replica, writes go
 * to the owner of the node through the Replicator and resolve once the owner has committed them
 * (and this replica has them).
 */

import { randomUUID } from 'node:crypto';
import { DEFAULTS } from '../config.ts';
import { ShoalError } from '../errors.ts';
import { isNodeType, metaProblem, type NodeType } from '../store/node-types.ts';
import type { NodeFilter, SeriesPoint, ShoalNode, Store } from '../store/store.ts';
import { toApi } from '../store/store.ts';
import type { Replicator } from './replicator.ts';

export interface CreateNode {
  type: string;
  parent?: string | null;
  owner?: string;
  name: string;
  meta?: Record<string, unknown>;
  value?: unknown;
}

/** What the automation layer adds: checks of wiring, and the run state shown with a node. */
export interface NodeHooks {
  /** Why a node about to be stored is not acceptable, or undefined. */
  check?: (node: ShoalNode) => string | undefined;
  /** The node as the API shows it (automation nodes get their `state`). */
  decorate?: (node: ShoalNode) => ShoalNode;
}

export class NodeService {
  readonly #selfId: string;
  readonly #store: Store;
  readonly #replicator: Replicator;
  readonly #knows: (id: string) => boolean;
  readonly #maxSeriesBytes: number;
  hooks: NodeHooks = {};

  constructor(deps: {
    selfId: string;
    store: Store;
    replicator: Replicator;
    knows: (id: string) => boolean;
    /** Values per series page, in bytes (Config.maxSeriesBytes). */
    maxSeriesBytes?: number;
  }) {
    this.#selfId = deps.selfId;
    this.#store = deps.store;
    this.#replicator = deps.replicator;
    this.#knows = deps.knows;
    this.#maxSeriesBytes = deps.maxSeriesBytes ?? DEFAULTS.maxSeriesBytes;
  }

  list(filter: NodeFilter = {}): ShoalNode[] {
    // An empty filter value (`?type=`) filters nothing, as if left out.
    const given = Object.fromEntries(Object.entries(filter).filter(([, value]) => value)) as NodeFilter;
    const nodes = this.#store.nodes(given);
    const decorate = this.hooks.decorate;
    return decorate ? nodes.map(decorate) : nodes;
  }

  get(id: string): ShoalNode {
    const node = this.#store.visibleNode(id);
    if (!node) throw new ShoalError('SHOAL_NOT_FOUND', `no node ${id}`);
    return this.#decorate(toApi(node));
  }

  async create(input: CreateNode): Promise<ShoalNode> {
    if (!isNodeType(input.type))
      throw new ShoalError('SHOAL_BAD_REQUEST', `type: "${input.type}" is not a node type`);
    if (input.type === 'Server') {
      throw new ShoalError(
        'SHOAL_BAD_REQUEST',
        'type: Server nodes are made by their servers, not by the API',
      );
    }
    const owner = input.owner ?? this.#selfId;
    if (owner !== this.#selfId && !this.#knows(owner)) {
      throw new ShoalError('SHOAL_BAD_REQUEST', `owner: no server ${owner} in the mesh`);
    }
    const meta = input.meta ?? {};
    const problem = metaProblem(input.type as NodeType, meta);
    if (problem) throw new ShoalError('SHOAL_BAD_REQUEST', problem);
    const parent = input.parent === undefined ? owner : input.parent;
    if (parent !== null && !this.#store.visibleNode(parent)) {
      throw new ShoalError('SHOAL_BAD_REQUEST', `parent: no node "${parent}"`);
    }
    const id = randomUUID();
    this.#check({
      id,
      type: input.type as NodeType,
      parent,
      owner,
      name: input.name,
      meta,
      updatedAt: '',
      version: 0,
    });
    const outcome = await this.#replicator.write(owner, {
      kind: 'create',
      node: {
        id,
        type: input.type,
        parent,
        name: input.name,
        meta,
        ...(input.value === undefined ? {} : { value: input.value }),
      },
    });
    return outcome.node ? this.#decorate(outcome.node) : this.get(id);
  }

  async update(id: string, patch: { name?: string; meta?: Record<string, unknown> }): Promise<ShoalNode> {
    const current = this.get(id);
    if (current.type === 'Server') {
      // Its name and meta are the server's own settings and facts (`GET /api/v1/server`).
      throw new ShoalError(
        'SHOAL_BAD_REQUEST',
        `node ${id} is a Server node: it shows its server's settings; rename a server with its name setting (--name)`,
      );
    }
    if (patch.name === undefined && patch.meta === undefined) {
      throw new ShoalError('SHOAL_BAD_REQUEST', 'give name or meta to change');
    }
    if (patch.meta !== undefined) this.#check({ ...current, ...patch });
    const outcome = await this.#replicator.write(current.owner, { kind: 'update', id, ...patch });
    return outcome.node ? this.#decorate(outcome.node) : this.get(id);
  }

  async setValue(id: string, value: unknown): Promise<ShoalNode> {
    // The hot path: one read for the owner (its owner checks the rest when it applies the write).
    const owner = this.#ownerOf(id);
    const outcome = await this.#replicator.write(owner, { kind: 'value', id, value });
    return outcome.node ? this.#decorate(outcome.node) : this.get(id);
  }

  async delete(id: string): Promise<void> {
    const owner = this.get(id).owner;
    await this.#replicator.write(owner, { kind: 'delete', id });
  }

  series(id: string, from: number, to: number, limit: number): { points: SeriesPoint[]; more: boolean } {
    const node = this.get(id);
    if (node.type !== 'DataPoint') {
      throw new ShoalError(
        'SHOAL_BAD_REQUEST',
        `node ${id} is a ${node.type}; only a DataPoint has a series`,
      );
    }
    return this.#store.seriesPage(id, from, to, limit, this.#maxSeriesBytes);
  }

  #ownerOf(id: string): string {
    const owner = this.#store.ownerOf(id);
    if (owner === undefined) throw new ShoalError('SHOAL_NOT_FOUND', `no node ${id}`);
    return owner;
  }

  #decorate(node: ShoalNode): ShoalNode {
    return this.hooks.decorate ? this.hooks.decorate(node) : node;
  }

  #check(node: ShoalNode): void {
    const problem = this.hooks.check?.(node);
    if (problem) throw new ShoalError('SHOAL_BAD_REQUEST', problem);
  }
}
