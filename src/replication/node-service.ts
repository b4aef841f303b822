/**
 * The node operations of the API, the stream and the CLI: reads come from this replica, writes go
 * to the owner of the node through the Replicator and resolve once the owner has committed them
 * (and this replica has them).
 */

import { randomUUID } from 'node:crypto';
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

export class NodeService {
  readonly #selfId: string;
  readonly #store: Store;
  readonly #replicator: Replicator;
  readonly #knows: (id: string) => boolean;

  constructor(deps: {
    selfId: string;
    store: Store;
    replicator: Replicator;
    knows: (id: string) => boolean;
  }) {
    this.#selfId = deps.selfId;
    this.#store = deps.store;
    this.#replicator = deps.replicator;
    this.#knows = deps.knows;
  }

  list(filter: NodeFilter = {}): ShoalNode[] {
    return this.#store.nodes(filter);
  }

  get(id: string): ShoalNode {
    const node = this.#store.visibleNode(id);
    if (!node) throw new ShoalError('SHOAL_NOT_FOUND', `no node ${id}`);
    return toApi(node);
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
      throw new ShoalError('SHOAL_BAD_REQUEST', `parent: no node ${parent}`);
    }
    const id = randomUUID();
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
    return outcome.node ?? this.get(id);
  }

  async update(id: string, patch: { name?: string; meta?: Record<string, unknown> }): Promise<ShoalNode> {
    const owner = this.#ownerOf(id);
    const outcome = await this.#replicator.write(owner, { kind: 'update', id, ...patch });
    return outcome.node ?? this.get(id);
  }

  async setValue(id: string, value: unknown): Promise<ShoalNode> {
    const owner = this.#ownerOf(id);
    const outcome = await this.#replicator.write(owner, { kind: 'value', id, value });
    return outcome.node ?? this.get(id);
  }

  async delete(id: string): Promise<void> {
    const owner = this.#ownerOf(id);
    await this.#replicator.write(owner, { kind: 'delete', id });
  }

  series(id: string, from: number, to: number, limit: number): SeriesPoint[] {
    const node = this.get(id);
    if (node.type !== 'DataPoint')
      throw new ShoalError(
        'SHOAL_BAD_REQUEST',
        `node ${id} is a ${node.type}; only a DataPoint has a series`,
      );
    return this.#store.series(id, from, to, limit);
  }

  #ownerOf(id: string): string {
    return this.get(id).owner;
  }
}
