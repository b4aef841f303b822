/** The remaining client commands: server, health, mesh, fire, hook, keys, metrics. */

import type { KeyRecord } from '../api/auth.ts';
import { ShoalError } from '../errors.ts';
import { ApiClient, type ClientOptions } from './client.ts';
import type { Print } from './nodes.ts';
import { formatTable } from './output.ts';

type Common = ClientOptions & { json?: boolean };

/** Prints a GET answer as JSON (these answers are small objects people read as they are). */
export async function show(path: string, options: Common, print: Print = console.log): Promise<void> {
  print(JSON.stringify(await new ApiClient(options).get(path), null, 2));
}

/** `shoal mesh`: the servers and the links between them, with RTTs. */
export async function mesh(options: Common, print: Print = console.log): Promise<void> {
  const graph = await new ApiClient(options).get<{
    servers: { id: string; name: string; state: string }[];
    links: { a: string; b: string; rttMs: number | null }[];
  }>('/api/v1/mesh');
  if (options.json) return print(JSON.stringify(graph, null, 2));
  const name = new Map(graph.servers.map((s) => [s.id, s.name]));
  print(
    formatTable(
      ['SERVER', 'STATE', 'ID'],
      graph.servers.map((s) => [s.name, s.state === 'self' ? 'this one' : s.state, s.id]),
    ),
  );
  print('');
  print(
    formatTable(
      ['LINK', 'RTT'],
      graph.links.map((l) => [
        `${name.get(l.a) ?? l.a} - ${name.get(l.b) ?? l.b}`,
        l.rttMs === null ? '-' : `${l.rttMs.toFixed(1)} ms`,
      ]),
    ),
  );
}

/** `shoal fire ID`: fires a trigger (presses a Button). */
export async function fire(id: string, options: Common, print: Print = console.log): Promise<void> {
  const result = await new ApiClient(options).request<{ fired: string[] }>(
    'POST',
    `/api/v1/nodes/${encodeURIComponent(id)}/fire`,
  );
  print(options.json ? JSON.stringify(result) : `fired ${result.fired.join(', ')}`);
}

/** `shoal hook PATH [--body JSON]`: calls an IncomingWebHook. */
export async function hook(
  path: string,
  options: Common & { body?: string },
  print: Print = console.log,
): Promise<void> {
  let body: unknown;
  try {
    body = options.body === undefined ? undefined : JSON.parse(options.body);
  } catch {
    throw new ShoalError('SHOAL_BAD_USAGE', '--body: not valid JSON');
  }
  const result = await new ApiClient(options).request<{ fired: string[] }>(
    'POST',
    `/api/v1/hooks/${encodeURIComponent(path)}`,
    body,
  );
  print(options.json ? JSON.stringify(result) : `fired ${result.fired.join(', ')}`);
}

/** `shoal keys list|create|revoke`. */
export async function keys(
  action: 'list' | 'create' | 'revoke',
  arg: string | undefined,
  options: Common & { scope?: string },
  print: Print = console.log,
): Promise<void> {
  const client = new ApiClient(options);
  if (action === 'create') {
    const made = await client.request<KeyRecord & { key: string }>('POST', '/api/v1/keys', {
      name: arg,
      scope: options.scope ?? 'read',
    });
    if (options.json) return print(JSON.stringify(made, null, 2));
    print(`made ${made.scope} key "${made.name}" (${made.id}); it is shown only now:`);
    print(`  ${made.key}`);
    return;
  }
  if (action === 'revoke') {
    const result = await client.request<{ id: string }>(
      'DELETE',
      `/api/v1/keys/${encodeURIComponent(arg ?? '')}`,
    );
    return print(options.json ? JSON.stringify(result) : `revoked ${result.id}`);
  }
  const { keys: list } = await client.get<{ keys: KeyRecord[] }>('/api/v1/keys');
  if (options.json) return print(JSON.stringify({ keys: list }, null, 2));
  print(
    formatTable(
      ['NAME', 'SCOPE', 'MADE', 'ID'],
      list.map((k) => [k.name, k.scope, k.builtin ? '(admin.key)' : k.createdAt, k.id]),
    ),
  );
}

/** `shoal metrics`: the Prometheus text, as it is. */
export async function metrics(
  options: Common,
  print: Print = (line) => process.stdout.write(line),
): Promise<void> {
  const url = new ApiClient(options).url;
  const res = await fetch(`${url}/metrics`).catch(() => undefined);
  if (!res) throw new ShoalError('SHOAL_UNREACHABLE', `cannot reach ${url}; is the peer running? (--url)`);
  print(await res.text());
}
