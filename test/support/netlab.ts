/**
 * A network lab for tests that need a real LAN: one network namespace per host, each joined by a
 * veth pair to a Linux bridge that lives in a "switch" namespace of its own. Nothing is added to
 * the host's root namespace, and a lab host's only interfaces are its loopback and its lab port,
 * so no packet can leave the lab. Addresses come from 198.18.74.0/24 (198.18.0.0/15 is reserved
 * for network tests, RFC 2544); the hosts have no default route, only the lab subnet and a
 * multicast route on the lab port. IPv6 is off in every lab namespace.
 *
 * Faults are nftables tables of the bridge family in the switch namespace (hook forward, matched by
 * bridge port), so the hosts see a silent network, as behind a real switch, and their own rule
 * sets stay empty.
 *
 * The test process never talks to a lab network itself: each host gets one long-lived agent
 * (`node` under `ip netns exec`) that fetches from 127.0.0.1 inside the namespace on request over
 * IPC, and refuses any other address.
 *
 * Cleanup: `destroySync()` kills every process in the lab's namespaces (`ip netns pids`, so also
 * peers and agents a test lost track of), deletes the namespaces, which takes their interfaces
 * and nft tables with them, and runs the cleanups registered with `atDestroy`. The same sweep runs
 * at process exit and on SIGINT/SIGTERM. A process killed outright (SIGKILL) cannot clean up: its
 * peers and agents exit when their IPC channel closes, and `NetLab.create` removes the namespaces
 * of lab processes that no longer run.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../../src/config.ts';
import type { PeerView } from '../../src/mesh/peer-table.ts';
import type { PeerProcess, TestCluster } from './cluster.ts';

/** The lab subnet: hosts are 198.18.74.1 up to .254, the subnet broadcast is 198.18.74.255. */
export const LAB_PREFIX = '198.18.74';
export const LAB_SUBNET = `${LAB_PREFIX}.0/24`;
export const LAB_BROADCAST = `${LAB_PREFIX}.255`;
/** Every lab namespace is named `shoal-lab-<pid of the test process>-<lab>-<host or "sw">`. */
const NS_PATTERN = /^shoal-lab-(\d+)-/;
const COMMAND_TIMEOUT_MS = 15_000;

/** A system tool by full path: from PATH, else the sbin directories a non-login PATH may lack. */
function findTool(name: string): string {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'];
  for (const dir of dirs.filter(Boolean)) if (existsSync(join(dir, name))) return join(dir, name);
  return name;
}
const IP = findTool('ip');
const NFT = findTool('nft');

/** Runs a command to its end; rejects with its stderr when it fails. */
export function run(command: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${command} ${args.join(' ')}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(' ')}: exit ${code ?? signal}: ${stderr.trim()}`));
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** One host of the lab. */
export interface LabHost {
  /** Network namespace name. */
  ns: string;
  /** IPv4 address on the lab subnet. */
  address: string;
  /** Name of the host's veth end in the switch namespace, which fault rules match. */
  port: string;
  /** Command prefix that runs a command inside the host's namespace. */
  exec: string[];
}

const liveLabs = new Set<NetLab>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const sweep = (): void => {
    for (const lab of liveLabs) lab.destroySync();
  };
  process.once('exit', sweep);
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      process.stderr.write(`netlab: ${signal}: removing the network lab\n`);
      sweep();
      process.exit(code);
    });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills every process in a namespace, then deletes it. Never throws. */
function removeNamespaceSync(ns: string): void {
  try {
    const pids = execFileSync(IP, ['netns', 'pids', ns], { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
    for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  } catch {
    // No such namespace: nothing runs in it.
  }
  try {
    execFileSync(IP, ['netns', 'delete', ns], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
  } catch {
    // Deleted already.
  }
}

/** Removes lab namespaces whose test process is gone (it was killed before it could clean up). */
function removeStaleNamespaces(): void {
  const list = execFileSync(IP, ['netns', 'list'], { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
  for (const ns of list.split('\n').map((line) => line.trim().split(/\s+/)[0] ?? '')) {
    const owner = Number(NS_PATTERN.exec(ns)?.[1] ?? Number.NaN);
    if (Number.isInteger(owner) && owner !== process.pid && !pidAlive(owner)) removeNamespaceSync(ns);
  }
}

let labSeq = 0;

export class NetLab {
  /** The switch namespace, holding the bridge `br0`. */
  readonly switchNs: string;
  readonly hosts: LabHost[] = [];
  readonly #tag: string;
  readonly #namespaces: string[] = [];
  readonly #agents = new Map<LabHost, Promise<NetnsAgent>>();
  readonly #cleanups: (() => void)[] = [];
  #destroyed = false;

  private constructor() {
    this.#tag = `shoal-lab-${process.pid}-${labSeq++}`;
    this.switchNs = `${this.#tag}-sw`;
  }

  /** Makes the switch namespace and its bridge; add hosts with `addHost`. */
  static async create(): Promise<NetLab> {
    removeStaleNamespaces();
    installExitHooks();
    const lab = new NetLab();
    liveLabs.add(lab);
    await lab.#addNamespace(lab.switchNs);
    const sw = ['-n', lab.switchNs];
    // Snooping off: the bridge floods multicast to every port, like a plain switch without a querier.
    await run(IP, [...sw, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    await run(IP, [...sw, 'link', 'set', 'br0', 'up']);
    return lab;
  }

  /** Adds host number `n` (1-254) at 198.18.74.<n>, linked to the bridge at port `p<n>`. */
  async addHost(n: number): Promise<LabHost> {
    const ns = `${this.#tag}-${n}`;
    const port = `p${n}`;
    const address = `${LAB_PREFIX}.${n}`;
    await this.#addNamespace(ns);
    const sw = ['-n', this.switchNs];
    const host = ['-n', ns];
    // Each end is made in its own namespace: the veth never exists in the root namespace.
    await run(IP, [...sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'lab0', 'netns', ns]);
    await run(IP, [...sw, 'link', 'set', port, 'master', 'br0']);
    await run(IP, [...sw, 'link', 'set', port, 'up']);
    await run(IP, [...host, 'addr', 'add', `${address}/24`, 'broadcast', LAB_BROADCAST, 'dev', 'lab0']);
    await run(IP, [...host, 'link', 'set', 'lab0', 'up']);
    await run(IP, [...host, 'route', 'add', '224.0.0.0/4', 'dev', 'lab0']);
    const labHost: LabHost = { ns, address, port, exec: [IP, 'netns', 'exec', ns] };
    this.hosts.push(labHost);
    return labHost;
  }

  /** The host's agent, started on first use and stopped with the lab. */
  agent(host: LabHost): Promise<NetnsAgent> {
    let agent = this.#agents.get(host);
    if (!agent) {
      agent = NetnsAgent.start(host);
      this.#agents.set(host, agent);
    }
    return agent;
  }

  /** Loads an nft script into the switch namespace (`nft -f -`). */
  async nft(script: string): Promise<void> {
    await this.#inSwitch([NFT, '-f', '-'], script);
  }

  /** Deletes a bridge-family table of the switch namespace (a fault is healed). */
  async deleteTable(table: string): Promise<void> {
    await this.#inSwitch([NFT, 'delete', 'table', 'bridge', table]);
  }

  /** Packets counted by each named counter of a bridge-family table of the switch namespace. */
  async counters(table: string): Promise<Record<string, number>> {
    const out = await this.#inSwitch([NFT, '-j', 'list', 'counters', 'table', 'bridge', table]);
    const parsed = JSON.parse(out) as { nftables: { counter?: { name: string; packets: number } }[] };
    return Object.fromEntries(
      parsed.nftables.flatMap((o) => (o.counter ? [[o.counter.name, o.counter.packets]] : [])),
    );
  }

  /** Registers a synchronous cleanup (e.g. removing a temporary directory) that `destroySync`
   * runs once the lab's processes are gone, on an interrupt too. */
  atDestroy(cleanup: () => void): void {
    this.#cleanups.push(cleanup);
  }

  /** Kills every process in the lab, deletes its namespaces and runs the registered cleanups;
   * safe to call twice, never throws. */
  destroySync(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const agent of this.#agents.values())
      agent.then(
        (a) => a.stop(),
        () => {},
      );
    for (const ns of [...this.#namespaces].reverse()) removeNamespaceSync(ns);
    for (const cleanup of this.#cleanups) {
      try {
        cleanup();
      } catch {
        // Best effort: the others still run.
      }
    }
    liveLabs.delete(this);
  }

  #inSwitch(command: string[], input?: string): Promise<string> {
    return run(IP, ['netns', 'exec', this.switchNs, ...command], input);
  }

  async #addNamespace(ns: string): Promise<void> {
    // Recorded first, so that a half-made namespace is removed too.
    this.#namespaces.push(ns);
    await run(IP, ['netns', 'add', ns]);
    await run(IP, ['-n', ns, 'link', 'set', 'lo', 'up']);
    // No IPv6: the lab link carries only what the tests make (no router solicitations, no MLD).
    const ipv6Off =
      'cd /proc/sys/net/ipv6/conf 2>/dev/null || exit 0; echo 1 > all/disable_ipv6; echo 1 > default/disable_ipv6';
    await run(IP, ['netns', 'exec', ns, 'sh', '-c', ipv6Off]);
  }
}

/**
 * Why the lab cannot run here, or undefined when it can. It needs Linux, root, `ip` and `nft`, and
 * proves them by building a throw-away lab with one host and a bridge-family nft table.
 */
export async function labUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  for (const [tool, pkg, version] of [
    [IP, 'iproute2', '-V'],
    [NFT, 'nftables', '--version'],
  ] as const) {
    try {
      await run(tool, [version]);
    } catch (err) {
      const why = (err as Error).message.split('\n')[0];
      return `${tool} (${pkg}) is not usable, scripts/install-test-deps.sh installs it: ${why}`;
    }
  }
  let lab: NetLab | undefined;
  try {
    lab = await NetLab.create();
    await lab.addHost(1);
    await lab.nft(`
table bridge shoal_probe {
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "p1" numgen random mod 100 < 20 drop
  }
}`);
    return undefined;
  } catch (err) {
    const why = (err as Error).message.split('\n')[0];
    return `cannot build a network lab (namespaces, veth, bridge, nft): ${why}`;
  } finally {
    lab?.destroySync();
  }
}

/** The agent: answers {id, url, headers} over IPC with {id, status, text} or {id, error}. */
const AGENT_SCRIPT = `
process.on('message', async (m) => {
  try {
    if (new URL(m.url).hostname !== '127.0.0.1') throw new Error('the lab agent fetches only from 127.0.0.1');
    const res = await fetch(m.url, { headers: m.headers, signal: AbortSignal.timeout(5000) });
    process.send({ id: m.id, status: res.status, text: await res.text() });
  } catch (err) {
    process.send({ id: m.id, error: String(err && err.message ? err.message : err) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
`;

interface AgentAnswer {
  id?: number;
  ready?: boolean;
  status?: number;
  text?: string;
  error?: string;
}

/** A long-lived process inside a host's namespace that makes HTTP requests to its loopback. */
export class NetnsAgent {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (a: AgentAnswer) => void; reject: (e: Error) => void }>();
  #next = 0;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (answer: AgentAnswer) => {
      if (answer.id === undefined) return;
      const pending = this.#pending.get(answer.id);
      this.#pending.delete(answer.id);
      pending?.resolve(answer);
    });
    child.once('exit', (code, signal) => {
      for (const { reject } of this.#pending.values()) {
        reject(new Error(`lab agent exited (${code ?? signal})`));
      }
      this.#pending.clear();
    });
  }

  static async start(host: LabHost): Promise<NetnsAgent> {
    const child = spawn(IP, ['netns', 'exec', host.ns, process.execPath, '-e', AGENT_SCRIPT], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    const agent = new NetnsAgent(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`lab agent in ${host.ns} did not start`)), 10_000);
      child.on('message', (m: AgentAnswer) => {
        if (!m.ready) return;
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`lab agent in ${host.ns} exited with ${code}`));
      });
    });
    return agent;
  }

  /** GET `http://127.0.0.1:<port><path>` inside the namespace. */
  async get(
    port: number,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; text: string }> {
    const id = this.#next++;
    const answer = await new Promise<AgentAnswer>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#child.send({ id, url: `http://127.0.0.1:${port}${path}`, headers }, (err) => {
        if (err) {
          this.#pending.delete(id);
          reject(err);
        }
      });
    });
    if (answer.error !== undefined) throw new Error(answer.error);
    return { status: answer.status ?? 0, text: answer.text ?? '' };
  }

  stop(): void {
    if (this.#child.connected) this.#child.disconnect();
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
  }
}

/** A shoal peer on a lab host; its API is reached through the host's agent. */
export class LabPeer {
  readonly host: LabHost;
  readonly process: PeerProcess;
  readonly #agent: NetnsAgent;

  constructor(host: LabHost, process: PeerProcess, agent: NetnsAgent) {
    this.host = host;
    this.process = process;
    this.#agent = agent;
  }

  get id(): string {
    return this.process.id;
  }

  get name(): string {
    return this.process.name;
  }

  get address(): string {
    return this.host.address;
  }

  async get<T = unknown>(
    path: string,
    key: string | null = this.process.apiKey,
  ): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
    const res = await this.#agent.get(this.process.port, path, headers);
    let body: unknown = res.text;
    try {
      body = JSON.parse(res.text);
    } catch {
      // Not JSON (metrics): the text is the body.
    }
    return { status: res.status, body: body as T };
  }

  async peers(): Promise<PeerView[]> {
    const { status, body } = await this.get<{ peers: PeerView[] }>('/api/v1/peers');
    if (status !== 200) throw new Error(`${this.name}: GET /api/v1/peers answered ${status}`);
    return body.peers;
  }

  async metrics(): Promise<string> {
    return (await this.#agent.get(this.process.port, '/metrics')).text;
  }

  /** The value of one sample, e.g. `shoal_beacons_rejected_total{reason="cluster"}`; 0 when absent. */
  async metric(sample: string): Promise<number> {
    return metricValue(await this.metrics(), sample);
  }

  /** The sum of every sample of a metric, whatever its labels. */
  async metricSum(name: string): Promise<number> {
    return (await this.metrics())
      .split('\n')
      .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  }
}

/**
 * Starts a peer on a lab host with the discovery a LAN server gets by default: bound to 0.0.0.0
 * on port 7420, beacons on port 7421 to the default targets (the subnet broadcast of its
 * interface and the multicast group), with the cluster's settings (testDefaults() timings) and
 * `options.config` on top.
 */
export async function startLabPeer(
  lab: NetLab,
  cluster: TestCluster,
  host: LabHost,
  options: { name: string; secret?: string; config?: Partial<Config> },
): Promise<LabPeer> {
  const agent = await lab.agent(host);
  const peer = await cluster.start({
    name: options.name,
    prefix: host.exec,
    ...(options.secret === undefined ? {} : { secret: options.secret }),
    config: { host: '0.0.0.0', port: 7420, beaconPort: 7421, beaconTargets: [], ...options.config },
  });
  return new LabPeer(host, peer, agent);
}

/** A random cluster secret. */
export function labSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** The value of one sample in a Prometheus text exposition; 0 when absent. */
export function metricValue(text: string, sample: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}
