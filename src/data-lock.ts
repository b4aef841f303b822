/**
 * One peer per data directory. Two peers started on one directory would take the same server id
 * and write one database: the mesh would see a server flapping between two places, and each
 * peer's writes would wait on the other's. The second one is refused at start instead, with
 * SHOAL_DATA_DIR and a message naming the directory and the process that holds it.
 *
 * The lock is an exclusive SQLite lock on `<dataDir>/shoal.lock`, held for the peer's life.
 * SQLite takes it with the operating system's file locks, which end with the process however it
 * ends: a peer killed with -9, or a Pi that lost power, leaves no stale lock to clean up, which a
 * pid file would (and a pid can be reused). better-sqlite3 is already a dependency; no lock-file
 * package does this without polling or a native module of its own. The holder's pid is written to
 * `<dataDir>/shoal.pid` for the message only: the lock alone decides.
 */

import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ShoalError } from './errors.ts';
import { ensureDataDir } from './identity.ts';

export class DataDirLock {
  readonly #db: Database.Database;
  readonly #pidFile: string;

  private constructor(db: Database.Database, pidFile: string) {
    this.#db = db;
    this.#pidFile = pidFile;
  }

  /** Makes the data directory if need be and takes its lock, or throws SHOAL_DATA_DIR. */
  static take(dataDir: string): DataDirLock {
    ensureDataDir(dataDir);
    const file = join(dataDir, 'shoal.lock');
    const pidFile = join(dataDir, 'shoal.pid');
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { timeout: 0 });
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      db?.close();
      if ((err as { code?: string }).code === 'SQLITE_BUSY') {
        const holder = readPid(pidFile);
        throw new ShoalError(
          'SHOAL_DATA_DIR',
          `data directory ${dataDir} is in use by another shoal peer` +
            `${holder ? ` (pid ${holder})` : ''}: stop that one, or give this one another --data`,
        );
      }
      throw new ShoalError('SHOAL_DATA_DIR', `${file}: ${(err as Error).message}`);
    }
    try {
      writeFileSync(pidFile, `${process.pid}\n`);
    } catch {
      // Only the message of a refused second peer reads it.
    }
    return new DataDirLock(db, pidFile);
  }

  /** Lets another peer take the directory; safe to call twice. */
  release(): void {
    if (!this.#db.open) return;
    rmSync(this.#pidFile, { force: true });
    this.#db.close(); // Rolls the empty transaction back and drops the lock.
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
