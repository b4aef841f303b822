/** `shoal init`: makes the data directory and a strong cluster secret. */

import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { generateSecret } from '../crypto.ts';
import { ensureDataDir, writeFileDurably } from '../identity.ts';

export function init(options: { data: string }, print: (line: string) => void = console.log): void {
  const dir = options.data;
  ensureDataDir(dir);
  const file = join(dir, 'secret');
  let secret: string;
  let made = false;
  try {
    secret = readFileSync(file, 'utf8').trim();
  } catch {
    secret = '';
  }
  if (!secret) {
    secret = generateSecret();
    writeFileDurably(file, `${secret}\n`, 0o600);
    made = true;
  }
  print(
    made
      ? `Made ${resolve(dir)} with a new cluster secret (kept in ${file}, readable only by you).`
      : `${resolve(dir)} already has a cluster secret (in ${file}); it was left as it is.`,
  );
  print('');
  print('Start this server:');
  print(`  shoal start --data ${shellQuote(dir)}`);
  print('');
  print('Start every other server of the mesh with the same secret (on a LAN, nothing else is needed):');
  print(`  shoal start --secret ${shellQuote(secret)}`);
  print('Servers that beacons cannot reach (another subnet, a VLAN, a container) also need one address:');
  print(`  shoal start --secret ${shellQuote(secret)} --peer HOST:7420`);
}

function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`;
}
