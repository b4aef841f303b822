/**
 * `shoal peers`: the peers a running server knows, as a table or JSON (`--retired`: the servers
 * retired from the mesh); `shoal forget ID`: retires a server that is gone for good.
 */

import type { PeerView } from '../mesh/peer-table.ts';
import type { RetiredServer } from '../store/store.ts';
import { ApiClient, type ClientOptions } from './client.ts';
import { ago, formatTable } from './output.ts';

export async function peers(
  options: ClientOptions & { json?: boolean; retired?: boolean },
  print = console.log,
): Promise<void> {
  if (options.retired) return retiredServers(options, print);
  const { peers } = await new ApiClient(options).get<{ peers: PeerView[] }>('/api/v1/peers');
  if (options.json) {
    print(JSON.stringify({ peers }, null, 2));
    return;
  }
  if (peers.length === 0) {
    print('No peers known yet.');
    return;
  }
  print(
    formatTable(
      ['NAME', 'STATE', 'ADDRESS', 'RTT', 'LAST SEEN', 'ROUTE', 'VERSION', 'MODEL', 'ID'],
      peers.map((p) => [
        p.name,
        p.state,
        p.address === null ? '-' : `${p.address}:${p.port ?? '?'}`,
        p.rttMs === null ? '-' : `${p.rttMs.toFixed(1)} ms`,
        ago(p.lastSeen),
        p.route === null ? '-' : p.route === 'direct' ? 'direct' : `via ${nameOf(peers, p.route)}`,
        p.version || '-',
        p.model,
        p.id,
      ]),
    ),
  );
}

function nameOf(peers: PeerView[], id: string): string {
  return peers.find((p) => p.id === id)?.name ?? id.slice(0, 8);
}

async function retiredServers(options: ClientOptions & { json?: boolean }, print: typeof console.log) {
  const { retired } = await new ApiClient(options).get<{ retired: RetiredServer[] }>('/api/v1/peers/retired');
  if (options.json) return print(JSON.stringify({ retired }, null, 2));
  if (retired.length === 0) return print('No server has been retired.');
  print(
    formatTable(
      ['NAME', 'RETIRED', 'BY', 'ID'],
      retired.map((r) => [r.name || '-', `${r.at} (${ago(r.at)})`, r.by, r.id]),
    ),
  );
}

/** `shoal forget ID`: retires a server that is gone for good (see src/replication/retirement.ts). */
export async function forget(
  id: string,
  options: ClientOptions & { json?: boolean },
  print = console.log,
): Promise<void> {
  const result = await new ApiClient(options).request<{ retired: RetiredServer; removedNodes: number }>(
    'DELETE',
    `/api/v1/peers/${encodeURIComponent(id)}`,
  );
  if (options.json) return print(JSON.stringify(result, null, 2));
  const { retired, removedNodes } = result;
  print(
    `retired ${retired.name || retired.id} (${retired.id}) from the mesh at ${retired.at}: ${removedNodes} of its nodes deleted here, and every other server deletes its copies and refuses it from now on`,
  );
}
