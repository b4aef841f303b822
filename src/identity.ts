/**
 * Who this server is. The id is made once and kept in `<data>/identity.json`, so it survives
 * restarts and renames; the generation goes up at every start, so other peers can tell a
 * restarted peer from a stale link to its previous run at once. Metadata is what the API and the
 * mesh show of the server.
 */

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { arch, platform as osPlatform, type as osType, release } from 'node:os';
import { join } from 'node:path';
import { ShoalError } from './errors.ts';
import { isId, newId } from './ids.ts';
import { VERSION } from './version.ts';

export interface Identity {
  id: string;
  generation: number;
}

export interface ServerMetadata {
  id: string;
  name: string;
  port: number;
  model: string;
  version: string;
  os: string;
  platform: string;
  settings: Record<string, unknown>;
}

/** Makes the data directory if needed; fails with SHOAL_DATA_DIR naming the problem. */
export function ensureDataDir(dataDir: string): void {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ShoalError('SHOAL_DATA_DIR', `data directory ${dataDir}: ${(err as Error).message}`);
  }
}

/** 2025-01-01 UTC: generations taken from the clock count seconds from here (fits 32 bits to 2161). */
const GENERATION_EPOCH_MS = Date.UTC(2025, 0, 1);

/**
 * The generation of a start after `last`: one more, or the seconds since 2025 when that is more.
 * The clock's part keeps a data directory put back from an older backup (with an older
 * generation in it) from starting a generation its peers saw already, given a clock that does not
 * go back across the restore.
 */
export function nextGeneration(last: number, nowMs: number): number {
  const byClock = Math.max(0, Math.floor((nowMs - GENERATION_EPOCH_MS) / 1000));
  return Math.max(last + 1, byClock) >>> 0;
}

/**
 * Loads the identity from the data directory (made, and locked, by `DataDirLock.take`), makes it
 * on first start, and records this start as a new generation.
 */
export function startIdentity(dataDir: string): Identity {
  const file = join(dataDir, 'identity.json');
  let identity: Identity = { id: newId(), generation: 0 };
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ShoalError('SHOAL_DATA_DIR', `${file}: ${(err as Error).message}`);
    }
  }
  if (text !== undefined) {
    const parsed = safeParse(text);
    if (!parsed || !isId(parsed.id) || !Number.isInteger(parsed.generation)) {
      throw new ShoalError('SHOAL_DATA_DIR', `${file} is damaged: it must hold {"id", "generation"}`);
    }
    identity = { id: parsed.id, generation: parsed.generation as number };
  }
  identity = { id: identity.id, generation: nextGeneration(identity.generation, Date.now()) };
  writeFileDurably(file, `${JSON.stringify(identity)}\n`);
  return identity;
}

/**
 * The admin API key: read from `<data>/admin.key`, with when it was made (the file's time), or
 * made on first start. A new key is written there (mode 0600) by `save`, once the start has got
 * as far as printing it: a start that fails before leaves no key that was never shown.
 */
export function adminKey(dataDir: string): { key: string; created: boolean; at: Date; save: () => void } {
  const file = join(dataDir, 'admin.key');
  try {
    const key = readFileSync(file, 'utf8').trim();
    if (key) return { key, created: false, at: statSync(file).mtime, save: () => {} };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ShoalError('SHOAL_DATA_DIR', `${file}: ${(err as Error).message}`);
    }
  }
  const key = `shoal_${randomBytes(24).toString('base64url')}`;
  const at = new Date();
  const save = (): void => {
    writeFileDurably(file, `${key}\n`, 0o600);
    utimesSync(file, at, at); // Its time is when it was made, as the API shows it before a restart.
  };
  return { key, created: true, at, save };
}

/** Writes a file so that a crash leaves either the old or the new content, never a torn one. */
export function writeFileDurably(file: string, content: string, mode = 0o644): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, content, { mode });
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, file);
  } catch (err) {
    throw new ShoalError('SHOAL_DATA_DIR', `${file}: ${(err as Error).message}`);
  }
}

/**
 * The hardware model: the device tree's model on a Raspberry Pi and other boards, else the DMI
 * product name on a PC, else "unknown".
 */
export function hardwareModel(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string {
  for (const path of [
    '/proc/device-tree/model',
    '/sys/firmware/devicetree/base/model',
    '/sys/class/dmi/id/product_name',
  ]) {
    try {
      const model = read(path).replaceAll('\0', '').trim();
      if (model) return model;
    } catch {
      // Not on this kind of machine: try the next source.
    }
  }
  return 'unknown';
}

/** LINUX, WINDOWS, MAC, or the Node platform name in capitals. */
export function platformName(p: NodeJS.Platform = osPlatform()): string {
  return (
    ({ linux: 'LINUX', win32: 'WINDOWS', darwin: 'MAC' } as Record<string, string>)[p] ?? p.toUpperCase()
  );
}

export function osDescription(): string {
  return `${osType()} ${release()} (${arch()})`;
}

function safeParse(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export { VERSION };
