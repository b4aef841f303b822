/**
 * Resident memory and CPU time of a process, from Linux /proc: VmRSS and RssAnon in
 * /proc/PID/status, Pss in /proc/PID/smaps_rollup, and utime + stime (fields 14 and 15, in clock
 * ticks) in /proc/PID/stat.
 */

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** Clock ticks per second (CLK_TCK), 100 on nearly every Linux. */
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/**
 * Memory of a process in bytes: `rss` (VmRSS, what `ps` and `top` show), `anon` (RssAnon: the
 * private part, mostly the JavaScript heap) and `pss` (proportional set size: shared pages, such
 * as the node binary's, divided among the processes that map them).
 */
export function memory(pid: number): { rss: number; anon: number; pss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (text: string, field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(text);
    if (!m) throw new Error(`no ${field} for process ${pid}`);
    return Number(m[1]) * 1024;
  };
  return {
    rss: kb(status, 'VmRSS'),
    anon: kb(status, 'RssAnon'),
    pss: kb(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss'),
  };
}

/** User plus system CPU time used so far, in milliseconds. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: split after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field N is fields[N - 3].
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / clockTicks();
}

/** The clock tick in milliseconds: the resolution of `cpuMs`. */
export function cpuResolutionMs(): number {
  return 1000 / clockTicks();
}
