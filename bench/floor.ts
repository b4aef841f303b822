/**
 * Two processes that set an idle peer's memory against what it cannot go under: an empty Node
 * process, and the stack-floor program (stack-floor.ts: shoal's dependencies at rest, without a
 * line of shoal), both started with the product's Node flags. The floor program is bundled first,
 * by the product's own build script, into node_modules/.cache (so it finds better-sqlite3 as
 * dist/shoal.js does), as a .mjs file: no package.json says "module" there, and Node 20 would first
 * compile a .js file as CommonJS to detect its syntax (11 MB more RSS, measured). Every process is
 * killed and every directory removed by `stop`, or by `stopEveryFloorNow` on failure and on Ctrl-C.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../src/cli/runtime.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUNDLE = join(ROOT, 'node_modules', '.cache', 'shoal-bench', 'stack-floor.mjs');
const READY_TIMEOUT_MS = 30_000;

const live = new Set<ChildProcess>();
const dirs = new Set<string>();

export interface Floor {
  /** An empty Node process (a timer keeps it alive). */
  empty: ChildProcess;
  /** The stack-floor program, once it printed `ready`. */
  stack: ChildProcess;
  stop(): void;
}

/** Bundles the floor program, starts both processes, and resolves once the program is ready. */
export async function startFloor(): Promise<Floor> {
  execFileSync(process.execPath, ['scripts/build.mjs', 'bench/stack-floor.ts', BUNDLE], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-floor-'));
  dirs.add(dir);
  const started: ChildProcess[] = [];
  const stop = (): void => {
    for (const child of started) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
  };
  try {
    const start = (args: string[]): ChildProcess => {
      const child = spawn(process.execPath, [...NODE_FLAGS, ...args], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      live.add(child);
      started.push(child);
      child.once('exit', () => live.delete(child));
      return child;
    };
    const empty = start(['-e', 'setInterval(() => {}, 1 << 30)']);
    const stack = start([BUNDLE, dir, join(ROOT, 'web')]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('the stack-floor program did not start')),
        READY_TIMEOUT_MS,
      );
      let out = '';
      stack.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        if (!/^ready$/m.test(out)) return;
        clearTimeout(timer);
        resolve();
      });
      for (const child of started) {
        child.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        child.once('exit', (code, signal) => {
          clearTimeout(timer);
          reject(
            new Error(`a floor process exited (${signal ?? code}) before the stack-floor program was ready`),
          );
        });
      }
    });
    return { empty, stack, stop };
  } catch (err) {
    stop();
    throw err;
  }
}

/** Kills every floor process and removes every directory (on failure and on Ctrl-C). */
export function stopEveryFloorNow(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}
