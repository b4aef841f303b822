/**
 * `shoal demo`: a whole mesh on this machine. Starts N peers as child processes with a throw-away
 * secret, data and admin key, bound to 127.0.0.1 and beaconing only to 127.255.255.255, prints
 * their URLs once they have found each other, and stops them all (and deletes their data) on
 * Ctrl-C.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSecret } from '../crypto.ts';
import { ShoalError } from '../errors.ts';
import type { PeerView } from '../mesh/peer-table.ts';
import { seedDemoHouse } from './demo-house.ts';
import { NODE_FLAGS } from './runtime.ts';
import type { ReadyMessage } from './start.ts';

export interface DemoOptions {
  peers: number;
  /** Port of the first peer; the others take the next ones. 0: any free ports. */
  port: number;
  beaconPort: number;
  logLevel: string;
}

const READY_TIMEOUT_MS = 30_000;

export async function demo(options: DemoOptions, print = console.log): Promise<void> {
  if (!Number.isInteger(options.peers) || options.peers < 1 || options.peers > 50) {
    throw new ShoalError('SHOAL_BAD_USAGE', '--peers: must be a whole number from 1 to 50');
  }
  const root = mkdtempSync(join(tmpdir(), 'shoal-demo-'));
  const secretFile = join(root, 'secret');
  writeFileSync(secretFile, generateSecret(), { mode: 0o600 });
  const apiKey = `shoal_${randomBytes(24).toString('base64url')}`;
  const children: ChildProcess[] = [];
  let stopping = false;

  const stopAll = async (code: number): Promise<never> => {
    stopping = true;
    await Promise.all(children.map((child) => stopChild(child)));
    rmSync(root, { recursive: true, force: true });
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  const started = Date.now();
  const ready: Promise<ReadyMessage>[] = [];
  for (let i = 0; i < options.peers; i++) {
    const dataDir = join(root, `peer-${i + 1}`);
    mkdirSync(dataDir, { mode: 0o700 });
    writeFileSync(join(dataDir, 'admin.key'), `${apiKey}\n`, { mode: 0o600 });
    const port = options.port === 0 ? 0 : options.port + i;
    const child = spawn(
      process.execPath,
      [
        ...NODE_FLAGS,
        ...process.execArgv.filter((flag) => !NODE_FLAGS.includes(flag)),
        process.argv[1] ?? '',
        'start',
        ...['--name', `demo-${i + 1}`, '--host', '127.0.0.1', '--port', String(port)],
        ...['--data', dataDir, '--secret-file', secretFile, '--beacon-target', '127.255.255.255'],
        ...['--beacon-port', String(options.beaconPort), '--log-level', options.logLevel],
      ],
      { stdio: ['ignore', 'inherit', 'ignore', 'ipc'] },
    );
    children.push(child);
    child.on('exit', (code, signal) => {
      if (!stopping) print(`demo-${i + 1} exited (${signal ?? `code ${code}`})`);
    });
    ready.push(waitForReady(child));
  }

  let peers: ReadyMessage[];
  try {
    peers = await Promise.all(ready);
  } catch (err) {
    print(`shoal demo: ${(err as Error).message}`);
    return stopAll(1);
  }
  const formedMs = await waitForMesh(peers, apiKey);
  print(`shoal demo: ${peers.length} peers on this machine (loopback only).`);
  for (const p of peers) print(`  ${p.name.padEnd(8)} ${p.url}/   id ${p.id}`);
  print(
    formedMs === undefined
      ? 'The mesh has not fully formed yet; `shoal peers` shows the links.'
      : `Every peer linked to every other ${formedMs} ms after the last one started (${Date.now() - started} ms in all).`,
  );
  try {
    const house = await seedDemoHouse(peers, apiKey);
    process.on('exit', () => house.stop());
    print(`A demo house with a room on every peer changes every second: open ${peers[0]?.url}/ to watch it.`);
  } catch (err) {
    print(`The demo house could not be made: ${(err as Error).message}`);
  }
  print(`API key for all of them: ${apiKey}`);
  print(`Try: shoal peers --url ${peers[0]?.url} --api-key ${apiKey}`);
  print('Ctrl-C stops the demo and deletes its data.');
}

function waitForReady(child: ChildProcess): Promise<ReadyMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('a peer did not start in time')), READY_TIMEOUT_MS);
    child.on('message', (message: ReadyMessage) => {
      if (message?.type !== 'shoal-ready') return;
      clearTimeout(timer);
      resolve(message);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`a peer exited with code ${code} before it was ready`));
    });
  });
}

/** Milliseconds until every peer sees every other connected, or undefined after 10 s. */
async function waitForMesh(peers: ReadyMessage[], apiKey: string): Promise<number | undefined> {
  const since = Date.now();
  while (Date.now() - since < 10_000) {
    const views = await Promise.all(
      peers.map(async (p) => {
        try {
          const res = await fetch(`${p.url}/api/v1/peers`, {
            headers: { authorization: `Bearer ${apiKey}` },
          });
          return ((await res.json()) as { peers: PeerView[] }).peers;
        } catch {
          return [];
        }
      }),
    );
    if (views.every((v) => v.filter((p) => p.state === 'connected').length === peers.length - 1)) {
      return Date.now() - since;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return undefined;
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGINT');
  });
}
