/** The HTTP API of a real peer: keys, errors, metadata, the event stream and metrics. */

import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type PeerProcess, TestCluster, waitFor } from '../support/cluster.ts';
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
