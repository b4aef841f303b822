/** The node commands: nodes, get, set, create, update, delete, series, watch. */

import { ShoalError } from '../errors.ts';
import type { ShoalEvent } from '../events.ts';
import type { ShoalNode } from '../store/store.ts';
import { ApiClient, type ClientOptions } from './client.ts';
import { ago, formatTable } from './output.ts';

export type Print = (line: string) => void;

interface Common extends ClientOptions {
  json?: boolean;
}

/** `shoal nodes`: the tree, indented under its roots, or a flat JSON list. */
export async function listNodes(
  options: Common & { type?: string; owner?: string; parent?: string },
  print: Print = console.log,
): Promise<void> {
  const query = new URLSearchParams();
  for (const key of ['type', 'owner', 'parent'] as const) if (options[key]) query.set(key, options[key]);
  const path = `/api/v1/nodes${query.size > 0 ? `?${query}` : ''}`;
  const { nodes } = await new ApiClient(options).get<{ nodes: ShoalNode[] }>(path);
  if (options.json) return print(JSON.stringify({ nodes }, null, 2));
  if (nodes.length === 0) return print('No nodes.');
  const servers = new Map(nodes.filter((n) => n.type === 'Server').map((n) => [n.id, n.name]));
  const rows = treeOrder(nodes).map(({ node, depth }) => [
    `${'  '.repeat(depth)}${node.name}`,
    node.type,
    node.value === undefined ? '' : formatValue(node.value, node.meta.unit),
    servers.get(node.owner) ?? node.owner.slice(0, 8),
    ago(node.updatedAt),
    node.id,
  ]);
  print(formatTable(['NAME', 'TYPE', 'VALUE', 'OWNER', 'UPDATED', 'ID'], rows));
}

/** `shoal get ID`. */
export async function getNode(id: string, options: Common, print: Print = console.log): Promise<void> {
  const node = await new ApiClient(options).get<ShoalNode>(`/api/v1/nodes/${encodeURIComponent(id)}`);
  if (options.json) return print(JSON.stringify(node, null, 2));
  printNode(node, print);
}

/** `shoal set ID VALUE`: VALUE is read as JSON when it is JSON (21.5, true, "on"), else as text. */
export async function setValue(
  id: string,
  raw: string,
  options: Common,
  print: Print = console.log,
): Promise<void> {
  const node = await new ApiClient(options).request<ShoalNode>(
    'PUT',
    `/api/v1/nodes/${encodeURIComponent(id)}/value`,
    {
      value: parseValue(raw),
    },
  );
  if (options.json) return print(JSON.stringify(node, null, 2));
  print(`${node.name} = ${formatValue(node.value, node.meta.unit)} (version ${node.version})`);
}

/** `shoal create TYPE NAME`. */
export async function createNode(
  type: string,
  name: string,
  options: Common & { parent?: string; owner?: string; meta?: string; value?: string },
  print: Print = console.log,
): Promise<void> {
  const body = {
    type,
    name,
    ...(options.parent ? { parent: options.parent } : {}),
    ...(options.owner ? { owner: options.owner } : {}),
    ...(options.meta ? { meta: parseJsonFlag(options.meta, '--meta') } : {}),
    ...(options.value !== undefined ? { value: parseValue(options.value) } : {}),
  };
  const node = await new ApiClient(options).request<ShoalNode>('POST', '/api/v1/nodes', body);
  if (options.json) return print(JSON.stringify(node, null, 2));
  print(`created ${node.type} ${node.name} ${node.id}`);
}

/** `shoal update ID`: a new name and/or meta. */
export async function updateNode(
  id: string,
  options: Common & { name?: string; meta?: string },
  print: Print = console.log,
): Promise<void> {
  if (options.name === undefined && options.meta === undefined) {
    throw new ShoalError('SHOAL_BAD_USAGE', 'update: give --name and/or --meta');
  }
  const body = {
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.meta === undefined ? {} : { meta: parseJsonFlag(options.meta, '--meta') }),
  };
  const node = await new ApiClient(options).request<ShoalNode>(
    'PATCH',
    `/api/v1/nodes/${encodeURIComponent(id)}`,
    body,
  );
  if (options.json) return print(JSON.stringify(node, null, 2));
  printNode(node, print);
}

/** `shoal delete ID`: the node and its subtree, everywhere. */
export async function deleteNode(id: string, options: Common, print: Print = console.log): Promise<void> {
  const result = await new ApiClient(options).request<{ id: string }>(
    'DELETE',
    `/api/v1/nodes/${encodeURIComponent(id)}`,
  );
  print(options.json ? JSON.stringify(result) : `deleted ${result.id} and everything below it`);
}

/** `shoal series ID`: recorded values of a data point. */
export async function series(
  id: string,
  options: Common & { from?: string; to?: string; limit?: string },
  print: Print = console.log,
): Promise<void> {
  const query = new URLSearchParams();
  for (const key of ['from', 'to', 'limit'] as const) if (options[key]) query.set(key, options[key]);
  const result = await new ApiClient(options).get<{ points: { t: string; value: unknown }[]; more: boolean }>(
    `/api/v1/nodes/${encodeURIComponent(id)}/series${query.size > 0 ? `?${query}` : ''}`,
  );
  if (options.json) return print(JSON.stringify(result, null, 2));
  if (result.points.length === 0) return print('No values recorded.');
  print(
    formatTable(
      ['TIME', 'VALUE'],
      result.points.map((p) => [p.t, formatValue(p.value)]),
    ),
  );
  if (result.more) {
    // The next page starts a millisecond after this one's last point.
    const next = Date.parse(result.points[result.points.length - 1]!.t) + 1;
    print(`(more values: --from ${next})`);
  }
}

/**
 * `shoal watch [--types LIST]`: every event (of those types) as it happens, a line each (JSON lines
 * with --json), until Ctrl-C. Reconnects when the stream drops, every second while the peer is
 * down or busy. A request refused (a wrong key, an unknown type), or a peer not there at the first
 * try, ends it with the error.
 */
export async function watch(
  options: Common & { types?: string; signal?: AbortSignal },
  print: Print = console.log,
): Promise<void> {
  const client = new ApiClient(options);
  const query = options.types === undefined ? '' : `?types=${encodeURIComponent(options.types)}`;
  let connected = false;
  for (;;) {
    let response: AsyncIterable<Uint8Array>;
    try {
      response = await client.stream(`/api/v1/events${query}`, options.signal);
      connected = true;
    } catch (err) {
      if (options.signal?.aborted) return;
      if (!connected || !(err instanceof ShoalError) || err.status < 500) throw err;
      print(`${err.message}; trying again`);
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data) print(options.json ? data : describeEvent(JSON.parse(data) as ShoalEvent));
          end = buffer.indexOf('\n\n');
        }
      }
    } catch (err) {
      if (options.signal?.aborted) return;
      print(`stream lost (${(err as Error).message}); reconnecting`);
    }
    if (options.signal?.aborted) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export function describeEvent(event: ShoalEvent): string {
  const time = event.at.slice(11, 23);
  if (event.type === 'peer') {
    const p = event.peer;
    return `${time} peer ${p.name} ${p.state}${p.route && p.route !== 'direct' ? ' (relayed)' : ''}`;
  }
  if (event.type === 'automation') {
    const s = event.state as { ok?: boolean; result?: unknown; error?: string; runner?: string };
    const what = event.fire ? 'fired' : s.ok ? 'ran' : 'failed';
    const detail = s.error ? `: ${s.error}` : s.result === undefined ? '' : ` -> ${formatValue(s.result)}`;
    return `${time} ${what} ${event.nodeId}${detail} (on ${s.runner?.slice(0, 8) ?? '?'})`;
  }
  if (event.type === 'retired') {
    const r = event.server;
    return `${time} server ${r.name || r.id} retired from the mesh (by ${r.by.slice(0, 8)})  ${r.id}`;
  }
  const n = event.node;
  const value = event.op === 'value' ? ` = ${formatValue(n.value, n.meta.unit)}` : '';
  return `${time} ${event.op} ${n.type} ${n.name}${value}  ${n.id}`;
}

function printNode(node: ShoalNode, print: Print): void {
  const rows: [string, string][] = [
    ['id', node.id],
    ['type', node.type],
    ['name', node.name],
    ['parent', node.parent ?? '-'],
    ['owner', node.owner],
    ...(node.value === undefined
      ? []
      : ([['value', formatValue(node.value, node.meta.unit)]] as [string, string][])),
    ['meta', JSON.stringify(node.meta)],
    ['updated', `${node.updatedAt} (${ago(node.updatedAt)})`],
    ['version', String(node.version)],
  ];
  for (const [key, value] of rows) print(`${key.padEnd(8)} ${value}`);
}

function treeOrder(nodes: ShoalNode[]): { node: ShoalNode; depth: number }[] {
  const byParent = new Map<string | null, ShoalNode[]>();
  const ids = new Set(nodes.map((n) => n.id));
  for (const node of nodes) {
    const key = node.parent !== null && ids.has(node.parent) ? node.parent : null;
    byParent.set(key, [...(byParent.get(key) ?? []), node]);
  }
  const out: { node: ShoalNode; depth: number }[] = [];
  const walk = (parent: string | null, depth: number): void => {
    for (const node of byParent.get(parent) ?? []) {
      out.push({ node, depth });
      walk(node.id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

function formatValue(value: unknown, unit?: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return typeof unit === 'string' && unit ? `${text} ${unit}` : text;
}

export function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function parseJsonFlag(raw: string, flag: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw new ShoalError('SHOAL_BAD_USAGE', `${flag}: not valid JSON`);
  }
}
