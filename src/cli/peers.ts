/** `shoal peers`: the peers a running server knows, as a table or JSON. */

import type { PeerView } from '../mesh/peer-table.ts';
import { ApiClient, type ClientOptions } from './client.ts';
import { ago, formatTable } from './output.ts';

export async function peers(options: ClientOptions & { json?: boolean }, print = console.log): Promise<void> {
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
