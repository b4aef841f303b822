/**
 * OutgoingWebHook delivery (src/automation/webhook.ts) against a real HTTP server on loopback,
 * port 0: what arrives, which answers are retried and with what backoff (an injected sleep records
 * the delays instead of waiting), timeouts and refused connections.
 */

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { deliver, type WebhookRequest } from '../../src/automation/webhook.ts';

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/**
 * What the server answers, request by request; the last answer repeats. 'hang' never answers;
 * 'endless' answers 200 with a body that never ends.
 */
let script: (number | 'hang' | 'endless')[] = [200];
/** Set when an endless answer was cut off by the client, with the bytes it had sent by then. */
let endlessClosed: Promise<number> | undefined;
let received: Received[] = [];
let server: Server;
let base: string;

function answer(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    received.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    });
    const status = script[Math.min(received.length - 1, script.length - 1)]!;
    if (status === 'hang') return;
    if (status === 'endless') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024);
      let sent = 0;
      const pump = (): void => {
        do sent += chunk.length;
        while (res.write(chunk));
      };
      res.on('drain', pump);
      endlessClosed = new Promise((resolve) => res.on('close', () => resolve(sent)));
      pump();
      return;
    }
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(`status ${status}`);
  });
}

before(async () => {
  server = createServer(answer);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  script = [200];
  received = [];
});

function request(extra: Partial<WebhookRequest> = {}): WebhookRequest {
  return {
    url: `${base}/hook`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"value":1}',
    timeoutMs: 2000,
    retries: 3,
    backoffMs: 100,
    ...extra,
  };
}

/** A sleep that returns at once and records what it was asked to wait. */
function recordingSleep(): { sleep: (ms: number) => Promise<void>; delays: number[] } {
  const delays: number[] = [];
  return {
    delays,
    sleep: async (ms) => {
      delays.push(ms);
    },
  };
}

describe('deliver', () => {
  test('succeeds on the first try', async () => {
    const { sleep, delays } = recordingSleep();
    const result = await deliver(request(), sleep);
    assert.deepEqual(result, { ok: true, status: 200, attempts: 1 });
    assert.deepEqual(delays, []);
    assert.equal(received.length, 1);
  });

  test('the body of the answer is not read: an endless one is cut off, not buffered', async () => {
    script = ['endless'];
    const result = await deliver(request({ timeoutMs: 5000 }), recordingSleep().sleep);
    assert.deepEqual(result, { ok: true, status: 200, attempts: 1 });
    // Socket buffers' worth, not the gigabytes that reading it until the timeout took.
    const sent = await endlessClosed!;
    assert.ok(sent < 64 * 1024 * 1024, `${sent} bytes sent before the client hung up`);
  });

  test('a 2xx other than 200 is success too', async () => {
    script = [204];
    assert.deepEqual(await deliver(request(), recordingSleep().sleep), {
      ok: true,
      status: 204,
      attempts: 1,
    });
  });

  test('500 then success: retried after backoffMs', async () => {
    script = [500, 200];
    const { sleep, delays } = recordingSleep();
    assert.deepEqual(await deliver(request(), sleep), { ok: true, status: 200, attempts: 2 });
    assert.deepEqual(delays, [100]);
    assert.equal(received.length, 2);
  });

  test('backoff doubles: 1x, 2x, 4x backoffMs, and the last answer is reported', async () => {
    script = [503];
    const { sleep, delays } = recordingSleep();
    const result = await deliver(request({ retries: 3, backoffMs: 250 }), sleep);
    assert.deepEqual(result, { ok: false, status: 503, attempts: 4, error: 'answered 503' });
    assert.deepEqual(delays, [250, 500, 1000]);
    assert.equal(received.length, 4);
  });

  test('429 is retried', async () => {
    script = [429, 429, 201];
    const { sleep, delays } = recordingSleep();
    assert.deepEqual(await deliver(request(), sleep), { ok: true, status: 201, attempts: 3 });
    assert.deepEqual(delays, [100, 200]);
  });

  test('a 4xx answer is final: no retry', async () => {
    for (const status of [400, 404, 410]) {
      script = [status, 200];
      received = [];
      const { sleep, delays } = recordingSleep();
      const result = await deliver(request(), sleep);
      assert.deepEqual(result, { ok: false, status, attempts: 1, error: `answered ${status}` });
      assert.deepEqual(delays, []);
      assert.equal(received.length, 1);
    }
  });

  test('retries: 0 tries once', async () => {
    script = [500];
    const { sleep, delays } = recordingSleep();
    assert.deepEqual(await deliver(request({ retries: 0 }), sleep), {
      ok: false,
      status: 500,
      attempts: 1,
      error: 'answered 500',
    });
    assert.deepEqual(delays, []);
  });

  test('a server that never answers: "no answer within" the timeout, each attempt', async () => {
    script = ['hang'];
    const { sleep, delays } = recordingSleep();
    const started = performance.now();
    const result = await deliver(request({ timeoutMs: 50, retries: 1 }), sleep);
    assert.deepEqual(result, { ok: false, attempts: 2, error: 'no answer within 50 ms' });
    assert.deepEqual(delays, [100]);
    assert.equal(received.length, 2);
    assert.ok(performance.now() - started < 2000);
  });

  test('connection refused: every attempt counted, with backoff between', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const { sleep, delays } = recordingSleep();
    const result = await deliver(request({ url: `http://127.0.0.1:${port}/hook`, retries: 2 }), sleep);
    assert.equal(result.ok, false);
    assert.equal(result.attempts, 3);
    assert.equal(result.status, undefined);
    assert.ok(result.error && result.error.length > 0);
    assert.deepEqual(delays, [100, 200]);
  });

  test('method, path, body and headers arrive as sent', async () => {
    const body = JSON.stringify({ value: 'ü €', list: [1, 2] });
    const result = await deliver(
      request({
        url: `${base}/some/path?x=1&y=two`,
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'x-shoal-test': 'yes', authorization: 'Bearer abc' },
        body,
      }),
      recordingSleep().sleep,
    );
    assert.equal(result.ok, true);
    const [got] = received;
    assert.equal(got?.method, 'PUT');
    assert.equal(got?.url, '/some/path?x=1&y=two');
    assert.equal(got?.body, body);
    assert.equal(got?.headers['content-type'], 'application/json');
    assert.equal(got?.headers['x-shoal-test'], 'yes');
    assert.equal(got?.headers.authorization, 'Bearer abc');
    assert.equal(got?.headers['content-length'], String(Buffer.byteLength(body)));
  });

  test('GET and HEAD send no body, even when one is given', async () => {
    for (const method of ['GET', 'HEAD']) {
      received = [];
      const result = await deliver(request({ method, body: 'ignored' }), recordingSleep().sleep);
      assert.deepEqual(result, { ok: true, status: 200, attempts: 1 }, method);
      assert.equal(received[0]?.method, method);
      assert.equal(received[0]?.body, '');
      assert.equal(received[0]?.headers['content-length'], undefined);
    }
  });

  test('no body at all for a POST sends an empty one', async () => {
    const result = await deliver(request({ body: undefined }), recordingSleep().sleep);
    assert.equal(result.ok, true);
    assert.equal(received[0]?.body, '');
  });
});
