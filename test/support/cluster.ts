/**
 * Real peers as child processes for integration tests and benchmarks: each runs the built CLI
 * (`dist/shoal.js start`) on 127.0.0.1 with a free port, beacons only to 127.255.255.255 on a
 * beacon port of the cluster's own, and reports readiness over IPC. Every process and temporary
 * directory a cluster makes is removed by `stop()`.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../../src/cli/runtime.ts';
import type { ReadyMessage } from '../../src/cli/start.ts';
import { type Config, testDefaults } from '../../src/config.ts';
import type { PeerView } from '../../src/mesh/peer-table.ts';
import type { ShoalNode } from '../../src/store/store.ts';

export const CLI = fileURLToPath(new URL('../../dist/shoal.js', import.meta.url));

export interface PeerOptions {
  name?: string;
  /** Reuse a data directory (a restart keeps the id). */
  dataDir?: string;
  secret?: string;
  port?: number;
  /** Settings on top of testDefaults() and the cluster's. */
  config?: Partial<Config>;
  /** Wrap the command, e.g. ['ip', 'netns', 'exec', 'ns1']. */
  prefix?: string[];
  /** Leave the admin key for the peer to make on its first start. */
  makeOwnAdminKey?: boolean;
}

export class PeerProcess {
  readonly name: string;
  readonly dataDir: string;
  readonly child: ChildProcess;
  id = '';
  port = 0;
  url = '';
  readonly exited: Promise<number | null>;
  stderr = '';
  #apiKey: string | undefined;

  constructor(name: string, dataDir: string, child: ChildProcess) {
    this.name = name;
    this.dataDir = dataDir;
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-20_000);
    });
  }

  /** The admin key, from the data directory (where the peer keeps it), read once it is there. */
  get apiKey(): string {
    this.#apiKey ??= readFileSync(join(this.dataDir, 'admin.key'), 'utf8').trim();
    return this.#apiKey;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async get<T = unknown>(
    path: string,
    key: string | null = this.apiKey,
  ): Promise<{ status: number; body: T }> {
    const res = await fetch(this.url + path, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON (metrics): the text is the body.
    }
    return { status: res.status, body: body as T };
  }

  async peers(): Promise<PeerView[]> {
    const { body } = await this.get<{ peers: PeerView[] }>('/api/v1/peers');
    return body.peers;
  }

  async metrics(): Promise<string> {
    const res = await fetch(`${this.url}/metrics`);
    return res.text();
  }

  /** Ctrl-C: a graceful leave. */
  async stop(): Promise<void> {
    if (this.alive) this.child.kill('SIGINT');
    await this.exited;
  }

  /** kill -9: no goodbye. */
  async kill(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await this.exited;
  }
}

export class TestCluster {
  readonly root = mkdtempSync(join(tmpdir(), 'shoal-test-'));
  readonly secret: string;
  readonly beaconPort: number;
  readonly config: Partial<Config>;
  readonly peers: PeerProcess[] = [];
  /** How long a peer may take to report ready (a boot storm on a busy machine takes longer). */
  readonly readyTimeoutMs: number;
  #count = 0;

  constructor(
    options: { secret?: string; beaconPort?: number; config?: Partial<Config>; readyTimeoutMs?: number } = {},
  ) {
    this.secret = options.secret ?? randomBytes(32).toString('base64url');
    this.beaconPort = options.beaconPort ?? 20_000 + Math.floor(Math.random() * 20_000);
    this.config = options.config ?? {};
    this.readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  }

  async start(options: PeerOptions = {}): Promise<PeerProcess> {
    const name = options.name ?? `peer-${++this.#count}`;
    const dataDir = options.dataDir ?? join(this.root, `${name}-${randomBytes(3).toString('hex')}`);
    if (!existsSync(dataDir)) mkdirSync(dataDir, { recursive: true });
    const keyFile = join(dataDir, 'admin.key');
    if (!options.makeOwnAdminKey && !existsSync(keyFile)) {
      writeFileSync(keyFile, `test_${randomBytes(12).toString('hex')}\n`, { mode: 0o600 });
    }
    const config = {
      ...testDefaults(),
      beaconPort: this.beaconPort,
      ...this.config,
      ...options.config,
      name,
      dataDir,
      secret: options.secret ?? this.secret,
      ...(options.port === undefined ? {} : { port: options.port }),
    };
    const configFile = join(this.root, `${name}-${randomBytes(3).toString('hex')}.json`);
    writeFileSync(configFile, JSON.stringify(config));
    // Started as the `shoal` command starts (its #! line carries the same Node flags).
    const argv = [process.execPath, ...NODE_FLAGS, CLI, 'start', '--config', configFile];
    const [command, ...args] = [...(options.prefix ?? []), ...argv] as [string, ...string[]];
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    const peer = new PeerProcess(name, dataDir, child);
    this.peers.push(peer);
    const ready = await readyMessage(child, name, this.readyTimeoutMs, () => peer.stderr);
    peer.id = ready.id;
    peer.port = ready.port;
    // A peer in another network namespace is not reachable at 127.0.0.1 from here: no url.
    peer.url = options.prefix
      ? ''
      : `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${ready.port}`;
    return peer;
  }

  /** Kills every peer still running and deletes the cluster's files. */
  async stop(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.kill()));
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** The IPC message by which a started peer says it is ready (or a failure naming why not). */
export function readyMessage(
  child: ChildProcess,
  name: string,
  timeoutMs: number,
  stderr: () => string,
): Promise<ReadyMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} not ready after ${timeoutMs} ms: ${stderr()}`)),
      timeoutMs,
    );
    child.on('message', (m: ReadyMessage) => {
      if (m?.type !== 'shoal-ready') return;
      clearTimeout(timer);
      resolve(m);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${signal ?? code}) before it was ready: ${stderr()}`));
    });
  });
}

/** Calls the API of `peer` (with its admin key unless `key` is given); the JSON body is parsed. */
export async function api<T = unknown>(
  peer: PeerProcess,
  method: string,
  path: string,
  body?: unknown,
  key: string = peer.apiKey,
): Promise<{ status: number; body: T }> {
  const res = await fetch(peer.url + path, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** Like `api`, but answers the body and throws on any error status. */
export async function call<T = unknown>(
  peer: PeerProcess,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const res = await api<T>(peer, method, path, body);
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Creates a node through `peer`, failing the test unless the answer is 201. */
export async function createNode(peer: PeerProcess, node: Record<string, unknown>): Promise<ShoalNode> {
  const res = await api<ShoalNode>(peer, 'POST', '/api/v1/nodes', node);
  if (res.status !== 201)
    throw new Error(`creating ${JSON.stringify(node)} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** True when every peer sees every other one connected (`direct`: over a link of their own). */
export async function fullMesh(peers: PeerProcess[], options: { direct?: boolean } = {}): Promise<boolean> {
  const views = await Promise.all(peers.map((p) => p.peers()));
  const linked = (v: PeerView): boolean =>
    v.state === 'connected' && (!options.direct || v.route === 'direct');
  return views.every((view, i) =>
    peers.every((other, j) => i === j || view.some((v) => v.id === other.id && linked(v))),
  );
}

/** The state of `target` as `observer` sees it. */
export async function stateOf(observer: PeerProcess, target: PeerProcess): Promise<PeerView | undefined> {
  return (await observer.peers()).find((p) => p.id === target.id);
}
