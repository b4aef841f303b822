/** `shoal start`: runs a peer in the foreground until SIGINT or SIGTERM, then leaves gracefully. */

import { join } from 'node:path';
import { type Config, type ConfigSources, loadConfig } from '../config.ts';
import { Peer } from '../peer.ts';

/** What a started peer tells the process that spawned it (tests, `shoal demo`) over IPC. */
export interface ReadyMessage {
  type: 'shoal-ready';
  id: string;
  name: string;
  port: number;
  url: string;
}

export async function start(sources: ConfigSources): Promise<void> {
  const config: Config = loadConfig(sources);
  const peer = new Peer(config);
  const started = await peer.start();
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${started.port}`;
  if (started.newAdminKey) {
    process.stderr.write(
      `\nshoal: admin API key, shown only this once (kept in ${join(config.dataDir, 'admin.key')}):\n  ${started.newAdminKey}\n\n`,
    );
  }
  process.stderr.write(`shoal: ${config.name} is up at ${url} (id ${started.id}); Ctrl-C leaves the mesh\n`);
  const ready: ReadyMessage = {
    type: 'shoal-ready',
    id: started.id,
    name: config.name,
    port: started.port,
    url,
  };
  process.send?.(ready);

  let signals = 0;
  const leave = (signal: string): void => {
    if (++signals > 1) process.exit(1);
    peer.log.info({ signal }, 'leaving the mesh');
    peer.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        peer.log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => leave('SIGINT'));
  process.on('SIGTERM', () => leave('SIGTERM'));
  process.on('disconnect', () => leave('disconnect'));
}
