/** The `shoal` command as a user runs it: exit codes, messages, init, peers and demo. */

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CLI, fullMesh, TestCluster, waitFor } from '../support/cluster.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function shoal(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

describe('the shoal command', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'shoal-cli-'));
  const cluster = new TestCluster();
  after(async () => {
    await cluster.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('start without a secret refuses with exit 2 and says how to make one', async () => {
    const run = await shoal(['start', '--data', join(tmp, 'nosecret'), '--host', '127.0.0.1', '--port', '0']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /SHOAL_NO_SECRET/);
    assert.match(run.stderr, /shoal init/);
  });

  test('bad flags and bad config fields exit 2 naming what is wrong', async () => {
    const port = await shoal(['start', '--secret', 'x'.repeat(32), '--port', 'abc']);
    assert.equal(port.code, 2);
    assert.match(port.stderr, /--port/);

    const file = join(tmp, 'bad.json');
    writeFileSync(file, JSON.stringify({ heartbeatIntervalMs: 100, colour: 'blue' }));
    const unknown = await shoal(['start', '--secret', 'x'.repeat(32), '--config', file]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /SHOAL_BAD_CONFIG.*colour/);

    const yaml = join(tmp, 'bad.yaml');
    writeFileSync(yaml, 'failureTimeoutMs: 10\n');
    const range = await shoal(['start', '--secret', 'x'.repeat(32), '--config', yaml]);
    assert.equal(range.code, 2);
    assert.match(range.stderr, /failureTimeoutMs/);

    const env = await shoal(['start', '--secret', 'x'.repeat(32)], { SHOAL_BEACON_PORT: 'many' });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /SHOAL_BEACON_PORT/);

    const peer = await shoal(['start', '--secret', 'x'.repeat(32), '--peer', 'no-port']);
    assert.equal(peer.code, 2);
    assert.match(peer.stderr, /peers/);

    const target = await shoal(['start', '--secret', 'x'.repeat(32), '--beacon-target', 'notanip']);
    assert.equal(target.code, 2);
    assert.match(target.stderr, /beaconTargets.*notanip.*not an IPv4 address/);

    // The parser's own errors are one line with the code too.
    const unknownFlag = await shoal(['start', '--colour', 'blue']);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /^shoal: SHOAL_BAD_USAGE: unknown option '--colour'.*\n$/);
    assert.equal(unknownFlag.stderr.trim().split('\n').length, 1, unknownFlag.stderr);

    const unknownCommand = await shoal(['launch']);
    assert.equal(unknownCommand.code, 2);
    assert.equal((await shoal([])).code, 2, 'no command at all');

    for (const [args, flag] of [
      [['series', 'some-id', '--limit', 'ten'], '--limit'],
      [['series', 'some-id', '--from', 'last tuesday'], '--from'],
      [['peers', '--url', 'not-a-url', '--api-key', 'k'], '--url'],
    ] as const) {
      const run = await shoal([...args]);
      assert.equal(run.code, 2, args.join(' '));
      assert.match(run.stderr, new RegExp(`^shoal: SHOAL_BAD_USAGE: ${flag}: `), args.join(' '));
    }
  });

  test('a first start that fails leaves no admin key unseen: the next one makes and prints it', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = String((taken.address() as AddressInfo).port);
    const data = join(tmp, 'first-start');
    const args = ['start', '--secret', 'x'.repeat(32), '--host', '127.0.0.1', '--port', port];
    const failed = await shoal([...args, '--data', data, '--beacon-target', '127.255.255.255']);
    taken.close();
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /SHOAL_PORT_IN_USE/);
    assert.ok(!existsSync(join(data, 'admin.key')), 'no key written by the failed start');
    const peer = await cluster.start({ name: 'first', dataDir: data, makeOwnAdminKey: true });
    await waitFor('the key on stderr', () => peer.stderr.includes(peer.apiKey));
  });

  test('--version and --help exit 0', async () => {
    const version = await shoal(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
    const help = await shoal(['--help']);
    assert.equal(help.code, 0);
    assert.equal((await shoal(['help', 'start'])).code, 0, 'help asked for, by command');
    for (const command of ['init', 'start', 'demo', 'peers'])
      assert.match(help.stdout, new RegExp(`\\b${command}\\b`));
  });

  test('init makes a data directory with a strong secret that start then uses', async () => {
    const data = join(tmp, 'init');
    const run = await shoal(['init', '--data', data]);
    assert.equal(run.code, 0);
    const secret = readFileSync(join(data, 'secret'), 'utf8').trim();
    assert.match(secret, /^[\w-]{43}$/, '256 random bits, base64url');
    assert.equal(statSync(join(data, 'secret')).mode & 0o777, 0o600);
    assert.match(run.stdout, new RegExp(`shoal start --secret ${secret}`));
    assert.match(run.stdout, /--peer HOST:7420/);
    // Running it again keeps the secret.
    const again = await shoal(['init', '--data', data]);
    assert.equal(again.code, 0);
    assert.equal(readFileSync(join(data, 'secret'), 'utf8').trim(), secret);

    // A peer started on that data directory needs no other secret and joins peers given it.
    const other = await cluster.start({ name: 'other', secret });
    const child = spawn(
      process.execPath,
      [CLI, 'start', '--data', data, '--host', '127.0.0.1', '--port', '0', '--name', 'inited'],
      {
        env: {
          PATH: process.env.PATH ?? '',
          SHOAL_BEACON_PORT: String(cluster.beaconPort),
          SHOAL_BEACON_TARGETS: '127.255.255.255',
          SHOAL_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      },
    );
    try {
      const ready = await new Promise<{ id: string; port: number }>((resolve) =>
        child.on('message', resolve),
      );
      await waitFor('the inited peer to link with the other', async () => {
        const { peers } = (await (
          await fetch(`${other.url}/api/v1/peers`, { headers: { authorization: `Bearer ${other.apiKey}` } })
        ).json()) as {
          peers: { id: string; state: string }[];
        };
        return peers.some((p) => p.id === ready.id && p.state === 'connected');
      });
    } finally {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
    }
  });

  test('a second peer on a data directory in use is refused, and a kill -9 leaves no stale lock', async () => {
    const holder = await cluster.start({ name: 'holder' });
    const identity = readFileSync(join(holder.dataDir, 'identity.json'), 'utf8');
    const second = await shoal(
      ['start', '--data', holder.dataDir, '--host', '127.0.0.1', '--port', '0', '--secret', cluster.secret],
      { SHOAL_BEACON_PORT: String(cluster.beaconPort), SHOAL_BEACON_TARGETS: '127.255.255.255' },
    );
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, /SHOAL_DATA_DIR/);
    assert.match(
      second.stderr,
      new RegExp(`${holder.dataDir} is in use by another shoal peer \\(pid ${holder.child.pid}\\)`),
    );
    assert.equal(
      readFileSync(join(holder.dataDir, 'identity.json'), 'utf8'),
      identity,
      'the refused peer did not count a generation of the holder',
    );
    await holder.kill();
    const again = await cluster.start({ name: 'holder', dataDir: holder.dataDir });
    assert.equal(again.id, holder.id, 'the same server, back on its directory');
  });

  test('peers prints a table for people and JSON for scripts', async () => {
    const a = await cluster.start({ name: 'table-a' });
    const b = await cluster.start({ name: 'table-b' });
    await waitFor('a mesh', () => fullMesh([a, b]));
    const table = await shoal(['peers', '--url', a.url, '--data', a.dataDir]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+STATE\s+ADDRESS\s+RTT/m);
    assert.match(table.stdout, /table-b\s+connected\s+127\.0\.0\.1:\d+/);

    const json = await shoal(['peers', '--json', '--url', a.url], { SHOAL_API_KEY: a.apiKey });
    assert.equal(json.code, 0);
    const parsed = JSON.parse(json.stdout) as { peers: { name: string; state: string }[] };
    assert.ok(parsed.peers.some((p) => p.name === 'table-b' && p.state === 'connected'));

    const badKey = await shoal(['peers', '--url', a.url, '--api-key', 'nope']);
    assert.equal(badKey.code, 1);
    assert.match(badKey.stderr, /SHOAL_UNAUTHORIZED/);

    const nobody = await shoal(['peers', '--url', 'http://127.0.0.1:9', '--api-key', 'k']);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /SHOAL_UNREACHABLE/);
  });

  test('demo starts a linked mesh on loopback, prints its URLs, and cleans up on Ctrl-C', async () => {
    const child = spawn(
      process.execPath,
      [CLI, 'demo', '--peers', '3', '--port', '0', '--beacon-port', String(cluster.beaconPort + 7)],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', TMPDIR: tmp } },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    try {
      await waitFor('the demo to report a linked mesh', () => /Ctrl-C stops the demo/.test(out), 30_000);
      assert.match(out, /Every peer linked to every other/);
      const urls = [...out.matchAll(/^ {2}demo-\d+\s+(http:\/\/127\.0\.0\.1:\d+)\//gm)].map((m) => m[1]!);
      assert.equal(urls.length, 3);
      const key = /API key for all of them: (\S+)/.exec(out)![1]!;
      const res = await fetch(`${urls[1]}/api/v1/peers`, { headers: { authorization: `Bearer ${key}` } });
      const { peers } = (await res.json()) as { peers: { state: string }[] };
      assert.equal(peers.filter((p) => p.state === 'connected').length, 2);
    } finally {
      child.kill('SIGINT');
    }
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0);
    const leftovers = readdirSync(tmp).filter((f) => f.startsWith('shoal-demo-'));
    assert.deepEqual(leftovers, [], 'the demo deletes its data');
  });
});

describe('the shoal command for the rest of the API', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());

  test('server, health, mesh, keys, fire, hook and metrics', async () => {
    const [a, b] = await Promise.all([cluster.start({ name: 'cli-a' }), cluster.start({ name: 'cli-b' })]);
    await waitFor('a mesh', () => fullMesh([a, b]));
    const run = (...args: string[]) => shoal([...args, '--url', a.url], { SHOAL_API_KEY: a.apiKey });

    const server = await run('server');
    assert.equal(JSON.parse(server.stdout).id, a.id);
    const health = await shoal(['health', '--url', a.url]);
    assert.equal(JSON.parse(health.stdout).status, 'ok', 'health needs no key');

    const mesh = await run('mesh');
    assert.match(mesh.stdout, /cli-a\s+this one/);
    assert.match(mesh.stdout, /cli-(a|b) - cli-(a|b)\s+(\d+\.\d ms|-)/);

    const made = await run('keys', 'create', 'tablet');
    assert.equal(made.code, 0, made.stderr);
    const key = /^ {2}(shoal_\S+)$/m.exec(made.stdout)![1]!;
    const listed = await run('keys');
    assert.match(listed.stdout, /tablet\s+read/);
    const readOnly = await shoal(['create', 'Project', 'x', '--url', a.url, '--api-key', key]);
    assert.equal(readOnly.code, 1);
    assert.match(readOnly.stderr, /SHOAL_FORBIDDEN/);
    const id = /tablet\s+read\s+\S+\s+(\S+)/.exec(listed.stdout)![1]!;
    assert.equal((await run('keys', 'revoke', id)).code, 0);
    assert.equal((await run('keys', 'shred')).code, 2);

    const button = JSON.parse((await run('create', 'Button', 'doorbell', '--json')).stdout) as { id: string };
    const fired = await run('fire', button.id);
    assert.equal(fired.code, 0, fired.stderr);
    assert.match(fired.stdout, new RegExp(`fired ${button.id}`));
    await run('create', 'IncomingWebHook', 'garage', '--meta', '{"path":"garage"}');
    const called = await run('hook', 'garage', '--body', '{"open":true}');
    assert.equal(called.code, 0, called.stderr);
    assert.equal((await run('hook', 'garage', '--body', '{nope')).code, 2);

    const metrics = await run('metrics');
    assert.match(metrics.stdout, /^shoal_peers\{state="connected"\} 1$/m);
  });
});
