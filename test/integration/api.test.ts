/** The HTTP API of a real peer: keys, errors, metadata, the event stream and metrics. */

import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { WebSocket } from 'ws';
import { api, type PeerProcess, TestCluster, waitFor } from '../support/cluster.ts';
import { sample } from '../support/prometheus.ts';

describe('the HTTP API', () => {
  const cluster = new TestCluster();
  let peer: PeerProcess;
  before(async () => {
    peer = await cluster.start({ name: 'api', makeOwnAdminKey: true });
  });
  after(() => cluster.stop());

  test('the admin key is made on first start, kept with mode 0600, and printed once', async () => {
    const file = join(peer.dataDir, 'admin.key');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(peer.apiKey, /^shoal_[\w-]{32}$/);
    await waitFor('the key on stderr', () => peer.stderr.includes(peer.apiKey));
    // A restart keeps the key and does not print it again.
    await peer.stop();
    const again = await cluster.start({ name: 'api', dataDir: peer.dataDir });
    assert.equal(again.apiKey, peer.apiKey);
    await waitFor('the start line', () => again.stderr.includes(' is up at '));
    assert.ok(!again.stderr.includes(peer.apiKey), 'the key is shown only once');
    peer = again;
  });

  test('GET /api/v1/health needs no key', async () => {
    const { status, body } = await peer.get<Record<string, unknown>>('/api/v1/health', null);
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.equal(body.id, peer.id);
    assert.equal(body.name, 'api');
    assert.match(String(body.version), /^\d+\.\d+\.\d+/);
    assert.equal(typeof body.uptimeS, 'number');
  });

  test('every other route needs a valid key', async () => {
    for (const key of [null, 'wrong-key']) {
      const { status, body } = await peer.get<{ error: { code: string; message: string } }>(
        '/api/v1/server',
        key,
      );
      assert.equal(status, 401);
      assert.equal(body.error.code, 'SHOAL_UNAUTHORIZED');
      assert.match(body.error.message, /Bearer/);
    }
  });

  test('GET /api/v1/server describes this server', async () => {
    const { status, body } = await peer.get<Record<string, unknown>>('/api/v1/server');
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body).sort(), [
      'id',
      'model',
      'name',
      'os',
      'platform',
      'port',
      'settings',
      'version',
    ]);
    assert.equal(body.id, peer.id);
    assert.equal(body.port, peer.port);
    assert.equal(body.platform, 'LINUX');
    assert.ok(typeof body.model === 'string' && body.model.length > 0);
    assert.ok(!JSON.stringify(body).includes(cluster.secret), 'the secret is never shown');
  });

  test('unknown routes answer a JSON 404', async () => {
    const { status, body } = await peer.get<{ error: { code: string } }>('/api/v1/nothing-here');
    assert.equal(status, 404);
    assert.equal(body.error.code, 'SHOAL_NOT_FOUND');
  });

  test('GET /api/v1/events streams peer changes as Server-Sent Events', async () => {
    const controller = new AbortController();
    const res = await fetch(`${peer.url}/api/v1/events`, {
      headers: { authorization: `Bearer ${peer.apiKey}` },
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const other = await cluster.start({ name: 'newcomer' });
    try {
      await waitFor('a connected event for the newcomer', async () => {
        const { value } = await reader.read();
        text += Buffer.from(value ?? new Uint8Array()).toString();
        return text
          .split('\n\n')
          .some(
            (block) =>
              block.includes('event: peer') && block.includes(other.id) && block.includes('"connected"'),
          );
      });
      const block = text.split('\n\n').find((b) => b.includes(other.id))!;
      assert.match(block, /^id: \d+$/m);
      const data = JSON.parse(/^data: (.*)$/m.exec(block)![1]!);
      assert.equal(data.type, 'peer');
      assert.equal(data.peer.name, 'newcomer');
    } finally {
      controller.abort();
      await other.kill();
    }
  });

  test('the event streams send only the types named in ?types=, and refuse an unknown type in HTTP', async () => {
    for (const query of ['types=node,nodes', 'types=none']) {
      const bad = await peer.get<{ error: { code: string; message: string } }>(`/api/v1/events?${query}`);
      assert.equal(bad.status, 400, query);
      assert.equal(bad.body.error.code, 'SHOAL_BAD_REQUEST');
      assert.match(
        bad.body.error.message,
        /^types: ("nodes" is not one of peer, node, automation, retired|none is for the WebSocket stream .*)$/,
      );
    }
    const wsUrl = `${peer.url.replace('http', 'ws')}/api/v1/stream`;
    const headers = { authorization: `Bearer ${peer.apiKey}` };
    const refused = new WebSocket(`${wsUrl}?types=bogus`, { headers });
    refused.on('error', () => {});
    const status = await new Promise<number>((resolve) => {
      refused.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      refused.on('open', () => resolve(101));
    });
    assert.equal(status, 400, 'answered before the upgrade');
    refused.terminate();

    const point = await api<{ id: string }>(peer, 'POST', '/api/v1/nodes', {
      type: 'DataPoint',
      name: 'typed',
    });
    assert.equal(point.status, 201);
    const controller = new AbortController();
    /** Opens an SSE stream of `types`; `text()` is all it got so far. */
    const sseOf = async (types: string): Promise<{ text: () => Promise<string> }> => {
      const res = await fetch(`${peer.url}/api/v1/events?types=${types}`, {
        headers,
        signal: controller.signal,
      });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      let text = '';
      return {
        text: async () => {
          const { value } = await reader.read();
          text += Buffer.from(value ?? new Uint8Array()).toString();
          return text;
        },
      };
    };
    type Got = { t: string; rid?: number; event?: { type: string; node?: { value?: unknown } } };
    /** Opens a stream, writes `value` through it, and resolves with what it got up to the answer. */
    const writeThrough = async (types: string, value: number): Promise<Got[]> => {
      const ws = new WebSocket(`${wsUrl}?types=${types}`, { headers });
      const got: Got[] = [];
      try {
        await new Promise<void>((resolve, reject) => {
          ws.on('message', (data: Buffer) => {
            const message = JSON.parse(data.toString()) as Got;
            got.push(message);
            if (message.t === 'hello')
              ws.send(JSON.stringify({ t: 'set', rid: value, id: point.body.id, value }));
            if (message.t === 'result' && message.rid === value) resolve();
          });
          ws.once('error', reject);
          ws.once('close', (code) => reject(new Error(`closed ${code}`)));
        });
      } finally {
        ws.terminate();
      }
      return got;
    };
    const nodeValues = (got: Got[]): unknown[] =>
      got.filter((m) => m.t === 'event' && m.event?.type === 'node').map((m) => m.event?.node?.value);
    try {
      const nodes = await sseOf('node');
      const automation = await sseOf('automation');
      // A client that only writes gets the hello and its answers, nothing else. One that asked
      // for peer events gets no node event for its own write (published before the answer); one
      // that asked for both gets it, before the answer.
      assert.deepEqual(
        (await writeThrough('none', 42)).map((m) => m.t),
        ['hello', 'result'],
      );
      assert.deepEqual(nodeValues(await writeThrough('peer', 43)), []);
      const both = await writeThrough('node,peer', 44);
      assert.deepEqual(nodeValues(both), [44]);
      assert.equal(both.at(-1)?.t, 'result');
      await waitFor('the values on the SSE stream of node events', async () => {
        const text = await nodes.text();
        return text.includes('"value":42') && text.includes('"value":44');
      });
      // An automation event after the writes: on a stream of automation events, it comes after
      // whatever of theirs was let through, which must be nothing.
      const button = await api<{ id: string }>(peer, 'POST', '/api/v1/nodes', {
        type: 'Button',
        name: 'typed',
      });
      assert.equal((await api(peer, 'POST', `/api/v1/nodes/${button.body.id}/fire`)).status, 200);
      let text = '';
      await waitFor('the fire on the SSE stream of automation events', async () => {
        text = await automation.text();
        return text.includes('event: automation');
      });
      assert.ok(!text.includes('event: node') && !text.includes('event: peer'), text);
    } finally {
      controller.abort();
    }
  });

  test('the stream: a plain GET and a wrong key are answered in HTTP; sockets still to authenticate hold slots of their own', async () => {
    const small = await cluster.start({
      name: 'small',
      config: { maxEventClients: 2, streamAuthTimeoutMs: 60_000 },
    });
    try {
      const plain = await api<{ error: { code: string } }>(small, 'GET', '/api/v1/stream');
      assert.equal(plain.status, 400);
      assert.equal(plain.body.error.code, 'SHOAL_BAD_REQUEST');
      const wsUrl = `${small.url.replace('http', 'ws')}/api/v1/stream`;
      const refused = new WebSocket(wsUrl, { headers: { authorization: 'Bearer wrong-key' } });
      refused.on('error', () => {}); // Closed before it opened: expected.
      const status = await new Promise<number>((resolve) => {
        refused.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        refused.on('open', () => resolve(101));
      });
      assert.equal(status, 401);
      refused.terminate();
      // As many sockets as there are client slots, none of them authenticating…
      const idle = await Promise.all(
        [1, 2].map(
          () =>
            new Promise<WebSocket>((resolve, reject) => {
              const ws = new WebSocket(wsUrl);
              ws.once('open', () => resolve(ws));
              ws.once('error', reject);
            }),
        ),
      );
      // …leave the slots of the clients that do.
      const controller = new AbortController();
      const sse = await fetch(`${small.url}/api/v1/events`, {
        headers: { authorization: `Bearer ${small.apiKey}` },
        signal: controller.signal,
      });
      assert.equal(sse.status, 200);
      controller.abort();
      // …and of the WebSocket clients with a key in the header.
      const keyed = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${small.apiKey}` } });
      const first = await new Promise<{ t: string }>((resolve, reject) => {
        keyed.once('message', (data: Buffer) => resolve(JSON.parse(data.toString())));
        keyed.once('close', (code) => reject(new Error(`closed ${code}`)));
      });
      assert.equal(first.t, 'hello');
      keyed.terminate();
      for (const ws of idle) ws.terminate();
    } finally {
      await small.kill();
    }
  });

  test('a client sending more than apiRatePerSecond gets 429 with Retry-After, counted', async () => {
    const slow = await cluster.start({ name: 'slow', config: { apiRatePerSecond: 1, apiBurst: 3 } });
    try {
      // The burst goes through, then (within a second) the next is refused.
      let res: Response | undefined;
      const statuses: number[] = [];
      for (let i = 0; i < 10 && res?.status !== 429; i++) {
        res = await fetch(`${slow.url}/api/v1/server`, {
          headers: { authorization: `Bearer ${slow.apiKey}` },
        });
        statuses.push(res.status);
      }
      assert.ok(statuses[0] === 200 && statuses.length <= 5, statuses.join(' '));
      assert.equal(res!.status, 429);
      assert.equal(res!.headers.get('retry-after'), '1');
      assert.equal(((await res!.json()) as { error: { code: string } }).error.code, 'SHOAL_RATE_LIMITED');
      await new Promise((r) => setTimeout(r, 1500)); // A token back, for the scrape.
      assert.ok(sample(await slow.metrics(), 'shoal_api_requests_limited_total') >= 1);
    } finally {
      await slow.kill();
    }
  });

  test('one address holds at most streamUnauthenticatedPerAddress streams still to authenticate; a timed-out one frees its slot at once', async () => {
    const peer1 = await cluster.start({
      name: 'guarded',
      config: { streamUnauthenticatedPerAddress: 1, streamAuthTimeoutMs: 300 },
    });
    try {
      const wsUrl = `${peer1.url.replace('http', 'ws')}/api/v1/stream`;
      const closeOf = (ws: WebSocket) =>
        new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      const first = new WebSocket(wsUrl);
      first.on('error', () => {});
      await new Promise((resolve) => first.once('open', resolve));
      const second = new WebSocket(wsUrl);
      second.on('error', () => {});
      assert.equal(await closeOf(second), 1013, 'one address, one waiting stream');
      assert.equal(await closeOf(first), 4401, 'no auth message in time');
      // Its slot was given back when it was refused: a new stream from here may authenticate.
      const third = new WebSocket(wsUrl);
      third.on('error', () => {});
      await new Promise((resolve) => third.once('open', resolve));
      third.send(JSON.stringify({ t: 'auth', key: peer1.apiKey }));
      const hello = await new Promise<{ t: string }>((resolve) =>
        third.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()))),
      );
      assert.equal(hello.t, 'hello');
      third.terminate();
    } finally {
      await peer1.kill();
    }
  });

  test('connections past maxConnections are closed as they come; the peer stays up', async () => {
    const small = await cluster.start({ name: 'few', config: { maxConnections: 16 } });
    const port = Number(new URL(small.url).port);
    const sockets: Socket[] = [];
    try {
      // Idle connections that never finish their request, as a flood would open.
      let closedAtOnce = 0;
      await Promise.all(
        Array.from({ length: 40 }, async () => {
          const socket = createConnection({ host: '127.0.0.1', port });
          sockets.push(socket);
          socket.on('error', () => {});
          socket.write('GET /api/v1/health HTTP/1.1\r\nHost: x\r\n');
          await new Promise<void>((resolve) => {
            socket.once('close', () => {
              closedAtOnce++;
              resolve();
            });
            setTimeout(resolve, 500);
          });
        }),
      );
      assert.ok(closedAtOnce >= 40 - 16, `${closedAtOnce} of 40 closed at once`);
      for (const socket of sockets) socket.destroy();
      await waitFor(
        'the API to answer again',
        async () => (await api(small, 'GET', '/api/v1/health')).status === 200,
      );
      assert.ok(small.alive, 'the peer is up');
    } finally {
      for (const socket of sockets) socket.destroy();
      await small.kill();
    }
  });

  test('GET /metrics is Prometheus text with the mesh counters', async () => {
    const res = await fetch(`${peer.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await res.text();
    for (const name of [
      'shoal_peers',
      'shoal_beacons_sent_total',
      'shoal_beacons_received_total',
      'shoal_beacons_rejected_total',
      'shoal_handshakes_rejected_total',
      'shoal_links_opened_total',
      'shoal_link_bytes_total',
      'shoal_event_clients',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.ok(sample(text, 'shoal_beacons_sent_total') > 0);
    assert.ok(sample(text, 'shoal_process_resident_memory_bytes') > 0);
  });
});

describe('API keys, the OpenAPI document and metrics', () => {
  const cluster = new TestCluster();
  let peer: PeerProcess;
  before(async () => {
    peer = await cluster.start({ name: 'keys' });
  });
  after(() => cluster.stop());

  test('a read-only key reads and may not write; an admin key makes and revokes keys', async () => {
    const made = await api<{ id: string; key: string; scope: string }>(
      peer,
      'POST',
      '/api/v1/keys',
      { name: 'wall tablet', scope: 'read' },
      peer.apiKey,
    );
    assert.equal(made.status, 201);
    assert.equal(made.body.scope, 'read');
    const readKey = made.body.key;
    assert.equal((await api(peer, 'GET', '/api/v1/nodes', undefined, readKey)).status, 200);
    const write = await api<{ error: { code: string } }>(
      peer,
      'POST',
      '/api/v1/nodes',
      { type: 'Project', name: 'x' },
      readKey,
    );
    assert.equal(write.status, 403);
    assert.equal(write.body.error.code, 'SHOAL_FORBIDDEN');
    assert.equal(
      (await api(peer, 'GET', '/api/v1/keys', undefined, readKey)).status,
      403,
      'only admins see keys',
    );
    const listed = await api<{ keys: { id: string; name: string; createdAt: string; builtin?: boolean }[] }>(
      peer,
      'GET',
      '/api/v1/keys',
    );
    assert.ok(listed.body.keys.some((k) => k.id === made.body.id && k.name === 'wall tablet'));
    const builtin = listed.body.keys.find((k) => k.builtin)!;
    const keyFile = statSync(join(peer.dataDir, 'admin.key'));
    assert.equal(builtin.createdAt, keyFile.mtime.toISOString(), 'made when its file was');
    assert.ok(!JSON.stringify(listed.body).includes(readKey), 'a key is shown only when it is made');
    assert.equal((await api(peer, 'DELETE', '/api/v1/keys/admin')).status, 400, 'admin.key stays');
    assert.equal((await api(peer, 'DELETE', `/api/v1/keys/${made.body.id}`)).status, 200);
    assert.equal(
      (await api(peer, 'GET', '/api/v1/nodes', undefined, readKey)).status,
      401,
      'a revoked key is refused',
    );
    // Keys survive a restart (their digests are in the store).
    const admin = await api<{ key: string }>(peer, 'POST', '/api/v1/keys', { name: 'ops', scope: 'admin' });
    await peer.stop();
    peer = await cluster.start({ name: 'keys', dataDir: peer.dataDir });
    assert.equal((await api(peer, 'GET', '/api/v1/server', undefined, admin.body.key)).status, 200);
  });

  test('GET /api/v1/openapi.json is a valid OpenAPI document of every route', async () => {
    const res = await fetch(`${peer.url}/api/v1/openapi.json`);
    assert.equal(res.status, 200, 'no key needed');
    const doc = (await res.json()) as { paths: Record<string, unknown> };
    const result = await new Validator().validate(doc as never);
    assert.equal(result.valid, true, JSON.stringify(result.errors));
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const routes = [...readme.matchAll(/^\| `(GET|POST|PUT|PATCH|DELETE) (\/[^`?]*)/gm)].map((m) =>
      m[2]!.replace(/:(\w+)/g, '{$1}'),
    );
    assert.ok(routes.length >= 15);
    for (const route of routes) {
      if (route === '/') continue;
      assert.ok(route in doc.paths, `${route} is documented`);
    }
  });

  test('/metrics parses as Prometheus text with the metrics operators need', async () => {
    const text = await peer.metrics();
    const families = parsePrometheusTextFormat(text) as { name: string; type: string }[];
    const names = new Set(families.map((f) => f.name));
    for (const name of [
      'shoal_peers',
      'shoal_link_rtt_ms',
      'shoal_beacons_sent_total',
      'shoal_beacons_received_total',
      'shoal_beacons_rejected_total',
      'shoal_link_bytes_total',
      'shoal_link_frames_total',
      'shoal_replication_lag_ops',
      'shoal_forwarded_writes_total',
      'shoal_store_bytes',
      'shoal_store_nodes',
      'shoal_event_clients',
      'shoal_automation_runs_total',
    ]) {
      assert.ok(names.has(name), name);
    }
  });
});
