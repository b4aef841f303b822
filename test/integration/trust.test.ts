/**
 * Trust at the edges, against real peers: another secret, replayed, forged and stale beacons,
 * handshakes that fail, tampered and oversized frames, floods. None may create a peer or crash
 * one; each is counted by reason in /metrics.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { deriveClusterKeys, FrameSealer } from '../../src/crypto.ts';
import { encodeBeacon } from '../../src/discovery/beacon-codec.ts';
import { idToBytes, newId } from '../../src/ids.ts';
import { dialerFinish, dialerHello } from '../../src/link/handshake.ts';
import { fullMesh, type PeerProcess, TestCluster, waitFor } from '../support/cluster.ts';
import { sample } from '../support/prometheus.ts';

describe('trust: what never becomes a peer', () => {
  const cluster = new TestCluster();
  let a: PeerProcess;
  let b: PeerProcess;
  let spy: Socket;
  let sender: Socket;
  const captured: Buffer[] = [];

  before(async () => {
    spy = createSocket({ type: 'udp4', reuseAddr: true });
    spy.on('message', (msg) => captured.push(msg));
    await new Promise<void>((resolve) => spy.bind(cluster.beaconPort, '0.0.0.0', resolve));
    sender = createSocket('udp4');
    await new Promise<void>((resolve) => sender.bind(0, '127.0.0.1', resolve));
    sender.setBroadcast(true);
    a = await cluster.start({ name: 'a' });
    b = await cluster.start({ name: 'b' });
    await waitFor('a and b linked', () => fullMesh([a, b]));
  });
  after(async () => {
    spy.close();
    sender.close();
    await cluster.stop();
  });

  const broadcast = (datagram: Buffer): Promise<void> =>
    new Promise((resolve, reject) =>
      sender.send(datagram, cluster.beaconPort, '127.255.255.255', (err) => (err ? reject(err) : resolve())),
    );

  test('a server with another secret never becomes a peer, by beacon or by dialling', async () => {
    const intruder = await cluster.start({
      name: 'intruder',
      secret: randomBytes(32).toString('base64url'),
      config: { peers: [`127.0.0.1:${a.port}`] },
    });
    await waitFor('beacons of the other cluster to be refused', async () =>
      sample(await a.metrics(), 'shoal_beacons_rejected_total', { reason: 'cluster' }) > 0 ? true : undefined,
    );
    await waitFor('its handshake to be refused', async () =>
      sample(await a.metrics(), 'shoal_handshakes_rejected_total', { reason: 'cluster' }) > 0
        ? true
        : undefined,
    );
    for (const peer of [a, b]) {
      assert.ok(
        !(await peer.peers()).some((p) => p.id === intruder.id),
        `${peer.name} does not list the intruder`,
      );
    }
    assert.deepEqual(await intruder.peers(), []);
    await intruder.kill();
  });

  test('a replayed beacon is refused', async () => {
    // A periodic beacon of a's, sent while b is listening: b has seen it once already.
    captured.length = 0;
    const aId = idToBytes(a.id);
    const original = await waitFor('a fresh beacon of a', () =>
      captured.find((d) => d.length > 60 && d.subarray(16, 32).equals(aId)),
    );
    await new Promise((r) => setTimeout(r, 100));
    const replays = async (): Promise<number> =>
      sample(await b.metrics(), 'shoal_beacons_rejected_total', { reason: 'replay' });
    const before = await replays();
    await broadcast(original);
    await waitFor('the replay to be counted', async () => ((await replays()) > before ? true : undefined));
  });

  test('forged beacons (altered bytes, a wrong key, a stale timestamp) are refused and create no peer', async () => {
    const keys = deriveClusterKeys(cluster.secret);
    const fakeId = newId();
    const beacon = {
      kind: 'hello' as const,
      senderId: fakeId,
      generation: 1,
      timestampMs: Date.now(),
      nonce: randomBytes(8),
      port: 9,
      host: '127.0.0.1',
      name: 'forged',
      version: '0.0.0',
    };
    // Altered after signing: the port no longer matches the MAC.
    const altered = encodeBeacon(beacon, keys);
    altered.writeUInt16BE(10, 52);
    // Signed with a key not derived from the secret, but with the right cluster tag.
    const wrongKey = encodeBeacon(
      { ...beacon, nonce: randomBytes(8) },
      { tag: keys.tag, beaconKey: randomBytes(32) },
    );
    // Properly signed, but ten minutes old: outside the clock window.
    const stale = encodeBeacon({ ...beacon, nonce: randomBytes(8), timestampMs: Date.now() - 600_000 }, keys);
    // Not a beacon at all.
    const junk = randomBytes(200);
    for (const datagram of [altered, wrongKey, stale, junk]) await broadcast(datagram);
    await waitFor('each forgery to be counted', async () => {
      const text = await a.metrics();
      return sample(text, 'shoal_beacons_rejected_total', { reason: 'mac' }) >= 2 &&
        sample(text, 'shoal_beacons_rejected_total', { reason: 'clock' }) >= 1 &&
        sample(text, 'shoal_beacons_rejected_total', { reason: 'magic' }) >= 1
        ? true
        : undefined;
    });
    assert.ok(!(await a.peers()).some((p) => p.id === fakeId), 'no peer from forged beacons');
  });

  test('a flood of datagrams is rate-limited and leaves the peer healthy', async () => {
    const junk = randomBytes(300);
    await Promise.all(Array.from({ length: 500 }, () => broadcast(junk)));
    await waitFor('the flood to be rate-limited', async () =>
      sample(await a.metrics(), 'shoal_beacons_rejected_total', { reason: 'rate' }) > 0 ? true : undefined,
    );
    const health = await a.get<{ status: string }>('/api/v1/health', null);
    assert.equal(health.body.status, 'ok');
    assert.ok(await fullMesh([a, b]), 'the mesh is intact');
  });

  test('a dialler that fails the challenge is refused', async () => {
    const keys = deriveClusterKeys(cluster.secret);
    const ws = await open(`ws://127.0.0.1:${a.port}/mesh/v1`);
    // Right cluster tag, wrong link key: the listener's proof does not verify for us, and ours
    // would not verify for it. Send a proof made with the wrong key.
    const wrong = { tag: keys.tag, linkKey: randomBytes(32) };
    const { message, state } = dialerHello(wrong, { id: newId(), generation: 1 });
    ws.send(message);
    const challenge = await nextMessage(ws);
    const step = dialerFinish(wrong, state, challenge);
    assert.equal(step.ok, false, "the listener's proof does not verify under a wrong key");
    // Answer with a made-up proof anyway.
    ws.send(Buffer.concat([Buffer.from('SHLK'), Buffer.from([1, 3]), randomBytes(32)]));
    const code = await closed(ws);
    assert.equal(code, 4003, 'closed with the auth code');
    assert.ok(sample(await a.metrics(), 'shoal_handshakes_rejected_total', { reason: 'auth' }) >= 1);
  });

  test('a tampered frame on an established link closes that link and nothing else', async () => {
    const keys = deriveClusterKeys(cluster.secret);
    const ws = await open(`ws://127.0.0.1:${a.port}/mesh/v1`);
    const { message, state } = dialerHello(keys, { id: newId(), generation: 1 });
    ws.send(message);
    const step = dialerFinish(keys, state, await nextMessage(ws));
    assert.ok(step.ok, 'the handshake succeeds with the secret');
    if (!step.ok) return;
    ws.send(step.message);
    const sealer = new FrameSealer(step.session.send);
    ws.send(sealer.seal(Buffer.from(JSON.stringify({ t: 'ping', ts: 1 }))));
    const frame = sealer.seal(Buffer.from(JSON.stringify({ t: 'ping', ts: 2 })));
    frame[3] = (frame[3] ?? 0) ^ 0x01;
    ws.send(frame);
    assert.equal(await closed(ws), 4003);
    await waitFor('the tampered frame to be counted', async () =>
      sample(await a.metrics(), 'shoal_frames_rejected_total', { reason: 'auth' }) >= 1 ? true : undefined,
    );
    assert.ok(await fullMesh([a, b]), 'the real link is untouched');
  });

  test('garbage, text and oversized messages on the link port are refused without harm', async () => {
    const text = await open(`ws://127.0.0.1:${a.port}/mesh/v1`);
    text.send('hello?');
    assert.equal(await closed(text), 4000);

    const big = await open(`ws://127.0.0.1:${a.port}/mesh/v1`);
    big.send(Buffer.alloc(5 * 1024 * 1024));
    assert.equal(await closed(big), 1009, 'too large');

    const silent = await open(`ws://127.0.0.1:${a.port}/mesh/v1`);
    // Says nothing: closed when the handshake timeout runs out.
    assert.equal(await closed(silent), 4006);

    const health = await a.get<{ status: string }>('/api/v1/health', null);
    assert.equal(health.body.status, 'ok');
  });
});

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function nextMessage(ws: WebSocket): Promise<Buffer> {
  return new Promise((resolve) => ws.once('message', (data: Buffer) => resolve(data)));
}

function closed(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => {
    ws.on('error', () => {});
    ws.once('close', (code) => resolve(code));
  });
}
