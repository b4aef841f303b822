/**
 * Replication of the node tree between real peers on loopback: writes anywhere, reads
 * everywhere, forwarding to owners, relays, partitions, crashes and deletes.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { cpSync, renameSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { after, describe, test } from 'node:test';
import type { ShoalNode } from '../../src/store/store.ts';
import {
  api,
  CLI,
  createNode as create,
  fullMesh,
  type PeerProcess,
  TestCluster,
  waitFor,
} from '../support/cluster.ts';
import { sample } from '../support/prometheus.ts';

function rawRequest(
  peer: PeerProcess,
  method: string,
  path: string,
  body: string,
  contentType: string | null = 'application/json',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(peer.url + path, {
      method,
      headers: {
        authorization: `Bearer ${peer.apiKey}`,
        ...(contentType === null ? {} : { 'content-type': contentType }),
        'content-length': Buffer.byteLength(body),
      },
    });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', (err) => {
      if (
        (err as NodeJS.ErrnoException).code !== 'EPIPE' &&
        (err as NodeJS.ErrnoException).code !== 'ECONNRESET'
      )
        reject(err);
    });
    req.end(body);
  });
}

async function nodeOn(peer: PeerProcess, id: string): Promise<ShoalNode | undefined> {
  const res = await api<ShoalNode>(peer, 'GET', `/api/v1/nodes/${id}`);
  return res.status === 200 ? res.body : undefined;
}

describe('replication across three peers', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());
  let peers: PeerProcess[] = [];

  test('what is written on each peer is read on all', async () => {
    peers = await Promise.all(['a', 'b', 'c'].map((name) => cluster.start({ name })));
    await waitFor('a full mesh', () => fullMesh(peers));
    const points: ShoalNode[] = [];
    for (const peer of peers) {
      const project = await create(peer, { type: 'Project', name: `${peer.name}-house` });
      assert.equal(project.owner, peer.id);
      assert.equal(project.parent, peer.id, 'a project hangs under its server by default');
      const point = await create(peer, {
        type: 'DataPoint',
        parent: project.id,
        name: 'temperature',
        meta: { unit: '°C' },
      });
      const set = await api<ShoalNode>(peer, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: 20.5 });
      assert.equal(set.status, 200);
      assert.equal(set.body.value, 20.5);
      points.push(set.body);
    }
    for (const reader of peers) {
      await waitFor(`${reader.name} to have every value`, async () => {
        const nodes = (await api<{ nodes: ShoalNode[] }>(reader, 'GET', '/api/v1/nodes')).body.nodes;
        return points.every((p) =>
          nodes.some((n) => n.id === p.id && n.value === 20.5 && n.version === p.version),
        );
      });
      const servers = (await api<{ nodes: ShoalNode[] }>(reader, 'GET', '/api/v1/nodes?type=Server')).body
        .nodes;
      assert.deepEqual(servers.map((s) => s.name).sort(), ['a', 'b', 'c'], 'every server is a Server node');
    }
  });

  test('a write to a node owned elsewhere is forwarded, and readable here at once', async () => {
    const [a, b, c] = peers as [PeerProcess, PeerProcess, PeerProcess];
    const point = await create(b, { type: 'DataPoint', name: 'humidity', meta: { unit: '%' } });
    await waitFor('a to have the new node', async () => (await nodeOn(a, point.id)) !== undefined);
    for (let i = 1; i <= 5; i++) {
      const res = await api<ShoalNode>(a, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: 40 + i });
      assert.equal(res.status, 200);
      assert.equal(res.body.owner, b.id);
      // Read-your-writes on the server that took the write.
      assert.equal((await nodeOn(a, point.id))?.value, 40 + i);
    }
    assert.equal((await nodeOn(b, point.id))?.value, 45, 'the owner has it');
    await waitFor('c to have the history', async () => {
      const res = await api<{ points: { t: string; value: number }[] }>(
        c,
        'GET',
        `/api/v1/nodes/${point.id}/series`,
      );
      return res.body.points.length === 5 ? res.body.points : undefined;
    }).then((points) =>
      assert.deepEqual(
        points.map((p) => p.value),
        [41, 42, 43, 44, 45],
      ),
    );

    // Create on a remote owner, from here.
    const remote = await create(a, { type: 'DataPoint', owner: c.id, name: 'pressure' });
    assert.equal(remote.owner, c.id);
    assert.equal((await nodeOn(a, remote.id))?.name, 'pressure');
  });

  test('kill -9 of the owner right after an acknowledged write keeps the write', async () => {
    const [a, b] = peers as [PeerProcess, PeerProcess];
    const point = await create(a, { type: 'DataPoint', name: 'durable' });
    const res = await api<ShoalNode>(a, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: 99 });
    assert.equal(res.status, 200);
    await a.kill();
    const back = await cluster.start({ name: 'a', dataDir: a.dataDir });
    assert.equal((await nodeOn(back, point.id))?.value, 99);
    await waitFor('b to have it too', async () => (await nodeOn(b, point.id))?.value === 99);
    peers[0] = back;
  });

  test('an owner restored from an older copy of its data gets its later writes back, then writes on', async () => {
    const [a, b] = peers as [PeerProcess, PeerProcess];
    await waitFor('a full mesh again', () => fullMesh(peers));
    const point = await create(a, { type: 'DataPoint', name: 'restored' });
    await waitFor('b to have the point', async () => (await nodeOn(b, point.id)) !== undefined);
    await a.stop();
    const backup = `${a.dataDir}.backup`;
    cpSync(a.dataDir, backup, { recursive: true });
    let back = await cluster.start({ name: 'a', dataDir: a.dataDir });
    peers[0] = back;
    for (const value of [1, 2, 3]) {
      const res = await api(back, 'PUT', `/api/v1/nodes/${point.id}/value`, { value });
      assert.equal(res.status, 200);
    }
    await waitFor('b to have value 3', async () => (await nodeOn(b, point.id))?.value === 3);
    const three = (await nodeOn(b, point.id))!.version;
    await back.stop();
    // Its disk is replaced; the backup goes back in.
    rmSync(a.dataDir, { recursive: true });
    renameSync(backup, a.dataDir);
    back = await cluster.start({ name: 'a', dataDir: a.dataDir });
    peers[0] = back;
    // Written at once, before a has heard from any neighbour: held until it has its ops back.
    const res = await api(back, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: 4 });
    assert.equal(res.status, 200);
    const four = (await nodeOn(back, point.id))!;
    assert.equal(four.value, 4);
    assert.ok(four.version > three, `numbered ${four.version}, after value 3's ${three}`);
    await waitFor('b to have value 4', async () => (await nodeOn(b, point.id))?.value === 4);
    await waitFor('every peer to list the restored one as connected', () => fullMesh(peers));
  });

  test('an owner restored from an older copy while every other server was down merges with them when they return', async () => {
    const [a, b, c] = peers as [PeerProcess, PeerProcess, PeerProcess];
    await waitFor('a full mesh again', () => fullMesh(peers));
    const point = await create(a, { type: 'DataPoint', name: 'forked' });
    await waitFor('the others to have the point', async () =>
      (await Promise.all([b, c].map((p) => nodeOn(p, point.id)))).every((n) => n !== undefined),
    );
    await a.stop();
    const backup = `${a.dataDir}.backup`;
    cpSync(a.dataDir, backup, { recursive: true });
    // Written after the backup: b and c hold it, a's disk will not.
    let back = await cluster.start({ name: 'a', dataDir: a.dataDir });
    peers[0] = back;
    const lost = await create(back, { type: 'Project', name: 'after the backup' });
    assert.equal((await api(back, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: 5 })).status, 200);
    const has = async (p: PeerProcess): Promise<boolean> =>
      (await nodeOn(p, lost.id)) !== undefined && (await nodeOn(p, point.id))?.value === 5;
    await waitFor('the others to have it', async () => (await Promise.all([b, c].map(has))).every(Boolean));
    await Promise.all([back.stop(), b.stop(), c.stop()]);

    // a's disk dies and its backup goes back in while no other server is up: it cannot know it
    // is behind, and numbers new writes under the numbers b and c hold other writes under.
    rmSync(a.dataDir, { recursive: true });
    renameSync(backup, a.dataDir);
    back = await cluster.start({ name: 'a', dataDir: a.dataDir, config: { restartHoldMs: 300 } });
    peers[0] = back;
    const alone = await create(back, { type: 'Project', name: 'while alone' });
    for (const value of [6, 7]) {
      assert.equal((await api(back, 'PUT', `/api/v1/nodes/${point.id}/value`, { value })).status, 200);
    }

    peers[1] = await cluster.start({ name: 'b', dataDir: b.dataDir });
    peers[2] = await cluster.start({ name: 'c', dataDir: c.dataDir });
    await waitFor('a full mesh again', () => fullMesh(peers));
    // The writes of both histories are everywhere, and the newer value wins.
    await waitFor('both histories on every server', async () =>
      (
        await Promise.all(
          peers.map(
            async (p) =>
              (await nodeOn(p, lost.id)) !== undefined &&
              (await nodeOn(p, alone.id)) !== undefined &&
              (await nodeOn(p, point.id))?.value === 7,
          ),
        )
      ).every(Boolean),
    );
    assert.equal(sample(await back.metrics(), 'shoal_replication_forks_mended_total'), 1);
    // New writes are numbered past both histories, so every server takes them.
    const res = await api(back, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: 8 });
    assert.equal(res.status, 200);
    await waitFor('value 8 everywhere', async () =>
      (await Promise.all(peers.map(async (p) => (await nodeOn(p, point.id))?.value === 8))).every(Boolean),
    );
    // The readings taken while alone reached the others too (with the snapshot of the mend).
    const readings = async (p: PeerProcess): Promise<unknown[]> =>
      (
        await api<{ points: { value: unknown }[] }>(p, 'GET', `/api/v1/nodes/${point.id}/series`)
      ).body.points.map((r) => r.value);
    // b and c had 5 (the lost history); a took 6 and 7 alone; 8 came after. a itself holds 5
    // only as far as the other history came back to it as ops.
    const both = async (p: PeerProcess): Promise<boolean> =>
      JSON.stringify(await readings(p)) === '[5,6,7,8]';
    await waitFor('the readings of both histories on b and c', async () =>
      (await Promise.all([peers[1]!, peers[2]!].map(both))).every(Boolean),
    );
    assert.deepEqual((await readings(peers[0]!)).slice(-3), [6, 7, 8]);
  });

  test('a node and its subtree are deleted everywhere', async () => {
    const [a, b, c] = peers as [PeerProcess, PeerProcess, PeerProcess];
    await waitFor('a full mesh again', () => fullMesh(peers));
    const project = await create(a, { type: 'Project', name: 'garage' });
    const own = await create(a, { type: 'DataPoint', parent: project.id, name: 'door' });
    const foreign = await create(a, { type: 'DataPoint', parent: project.id, owner: b.id, name: 'light' });
    await waitFor('c to have the subtree', async () => (await nodeOn(c, foreign.id)) !== undefined);
    const res = await api(c, 'DELETE', `/api/v1/nodes/${project.id}`);
    assert.equal(res.status, 200);
    for (const peer of peers) {
      await waitFor(`${peer.name} to lose the subtree`, async () => {
        const gone = await Promise.all(
          [project, own, foreign].map(async (n) => (await nodeOn(peer, n.id)) === undefined),
        );
        return gone.every(Boolean);
      });
    }
    // b deleted its own part too (not just hidden).
    await waitFor('b to delete its node below the deleted project', async () => {
      const nodes = (await api<{ nodes: ShoalNode[] }>(b, 'GET', `/api/v1/nodes?owner=${b.id}`)).body.nodes;
      return !nodes.some((n) => n.id === foreign.id);
    });
  });

  test('bad writes get clear errors', async () => {
    const [a, b] = peers as [PeerProcess, PeerProcess];
    const point = await create(a, { type: 'DataPoint', name: 'checked', meta: { kind: 'number' } });
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/api/v1/nodes', { type: 'Toaster', name: 'x' }, 400, 'SHOAL_BAD_REQUEST'],
      ['POST', '/api/v1/nodes', { type: 'Project' }, 400, 'SHOAL_BAD_REQUEST'],
      [
        'POST',
        '/api/v1/nodes',
        { type: 'Project', name: 'x', parent: '00000000-0000-4000-8000-000000000000' },
        400,
        'SHOAL_BAD_REQUEST',
      ],
      ['POST', '/api/v1/nodes', { type: 'DataPoint', name: 'x', parent: point.id }, 400, 'SHOAL_BAD_REQUEST'],
      [
        'POST',
        '/api/v1/nodes',
        { type: 'HighThreshold', name: 'x', parent: point.id, meta: {} },
        400,
        'SHOAL_BAD_REQUEST',
      ],
      ['POST', '/api/v1/nodes', { type: 'Server', name: 'x' }, 400, 'SHOAL_BAD_REQUEST'],
      // Not turned into a string, and not a string UTF-8 can hold.
      ['POST', '/api/v1/nodes', { type: 'Project', name: 5 }, 400, 'SHOAL_BAD_REQUEST'],
      ['POST', '/api/v1/nodes', { type: 'Project', name: 'bad\ud800name' }, 400, 'SHOAL_BAD_REQUEST'],
      ['PUT', `/api/v1/nodes/${point.id}/value`, { value: 'hot' }, 400, 'SHOAL_BAD_REQUEST'],
      ['PUT', `/api/v1/nodes/${point.id}/value`, {}, 400, 'SHOAL_BAD_REQUEST'],
      ['PUT', `/api/v1/nodes/${b.id}/value`, { value: 1 }, 400, 'SHOAL_BAD_REQUEST'],
      ['PUT', '/api/v1/nodes/no-such-node/value', { value: 1 }, 404, 'SHOAL_NOT_FOUND'],
      ['GET', '/api/v1/nodes/no-such-node', undefined, 404, 'SHOAL_NOT_FOUND'],
      ['PATCH', `/api/v1/nodes/${point.id}`, {}, 400, 'SHOAL_BAD_REQUEST'],
      ['PATCH', `/api/v1/nodes/${point.id}`, { type: 'Project' }, 400, 'SHOAL_BAD_REQUEST'],
      ['PATCH', `/api/v1/nodes/${a.id}`, { name: 'not a' }, 400, 'SHOAL_BAD_REQUEST'],
      ['DELETE', `/api/v1/nodes/${a.id}`, undefined, 400, 'SHOAL_BAD_REQUEST'],
    ];
    for (const [method, path, body, status, code] of cases) {
      const res = await api<{ error: { code: string; message: string } }>(a, method, path, body);
      assert.equal(
        res.status,
        status,
        `${method} ${path} ${JSON.stringify(body)?.slice(0, 80)}: ${JSON.stringify(res.body)}`,
      );
      assert.equal(res.body.error.code, code);
      assert.ok(res.body.error.message.length > 0);
    }
    // An oversized body is refused before it is read (the server may close the socket while the
    // client is still sending, so read the answer with node:http, which reports it anyway).
    const tooLarge = await rawRequest(
      a,
      'PUT',
      `/api/v1/nodes/${point.id}/value`,
      JSON.stringify({ value: 'x'.repeat(2 * 1024 * 1024) }),
    );
    assert.equal(tooLarge.status, 413);
    assert.equal((JSON.parse(tooLarge.body) as { error: { code: string } }).error.code, 'SHOAL_TOO_LARGE');
    // Nested too deep to write (a few thousand levels crashed every replica), or too large for an
    // op to fit in a link message: refused by the owner, through a peer too, and everyone stays up.
    const blob = await create(a, { type: 'DataPoint', name: 'blob', meta: { kind: 'json' } });
    const deep = `{"value":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    for (const peer of [a, b]) {
      const res = await rawRequest(peer, 'PUT', `/api/v1/nodes/${blob.id}/value`, deep);
      assert.equal(res.status, 400, res.body);
      assert.match(res.body, /nested deeper than 32/);
      const big = await api<{ error: { code: string } }>(peer, 'PUT', `/api/v1/nodes/${blob.id}/value`, {
        value: 'x'.repeat(300 * 1024),
      });
      assert.equal(big.status, 413);
      assert.equal(big.body.error.code, 'SHOAL_TOO_LARGE');
      // A number JSON cannot carry (it would be stored as null).
      const huge = await rawRequest(peer, 'PUT', `/api/v1/nodes/${blob.id}/value`, '{"value":[1e400]}');
      assert.equal(huge.status, 400, huge.body);
      assert.match(huge.body, /number JSON cannot carry/);
    }
    for (const peer of peers) assert.equal((await api(peer, 'GET', '/api/v1/health')).status, 200);
    const renamed = await api<ShoalNode>(a, 'PATCH', `/api/v1/nodes/${point.id}`, {
      name: 'renamed',
      meta: { kind: 'number', unit: 'K' },
    });
    assert.equal(renamed.status, 200);
    assert.equal(renamed.body.name, 'renamed');
    assert.equal(renamed.body.meta.unit, 'K');
    // A field no route takes is named; a change to what the node is already makes no version.
    const typo = await api<{ error: { message: string } }>(a, 'PATCH', `/api/v1/nodes/${point.id}`, {
      nmae: 'x',
    });
    assert.match(typo.body.error.message, /"nmae" is not a field/);
    const same = await api<ShoalNode>(a, 'PATCH', `/api/v1/nodes/${point.id}`, { name: 'renamed' });
    assert.equal(same.status, 200);
    assert.equal(same.body.version, renamed.body.version, 'no new version');
    // A URL that cannot be routed is a JSON error too; an empty body sent as JSON is no body.
    const badUrl = await api<{ error: { code: string } }>(a, 'GET', '/api/v1/nodes/%00%ff');
    assert.deepEqual([badUrl.status, badUrl.body.error.code], [400, 'SHOAL_BAD_REQUEST']);
    const gone = await create(a, { type: 'Project', name: 'deleted with an empty JSON body' });
    assert.equal((await rawRequest(a, 'DELETE', `/api/v1/nodes/${gone.id}`, '')).status, 200);
    // A body refused says why: not JSON (and where), not sent as JSON, or a key no body may hold.
    const project = JSON.stringify({ type: 'Project', name: 'p' });
    const refusals: [body: string, type: string | null, why: RegExp][] = [
      ['{"type":"Project",', 'application/json', /not valid JSON: .*position 18/],
      [
        project,
        'text/plain',
        /must be JSON, sent with Content-Type: application\/json \(this one was sent as text\/plain\)/,
      ],
      [project, 'application/x-www-form-urlencoded', /sent as application\/x-www-form-urlencoded/],
      [project, null, /sent without a Content-Type/],
      ['{"type":"Project","name":"p","meta":{"__proto__":{"x":1}}}', 'application/json', /"__proto__" key/],
    ];
    for (const [body, type, why] of refusals) {
      const res = await rawRequest(a, 'POST', '/api/v1/nodes', body, type);
      assert.equal(res.status, 400, `${type}: ${res.body}`);
      assert.equal(JSON.parse(res.body).error.code, 'SHOAL_BAD_REQUEST');
      assert.match(JSON.parse(res.body).error.message, why);
    }
    // An empty body is no body, whatever its type; a trigger takes text as a string payload.
    const alsoGone = await create(a, { type: 'Project', name: 'deleted with an empty text body' });
    assert.equal(
      (await rawRequest(a, 'DELETE', `/api/v1/nodes/${alsoGone.id}`, '', 'text/plain')).status,
      200,
    );
    const hook = await rawRequest(a, 'POST', '/api/v1/hooks/no-such-hook', 'door open', 'text/plain');
    assert.equal(hook.status, 404, hook.body);
    // An empty filter value filters nothing.
    const all = await api<{ nodes: ShoalNode[] }>(a, 'GET', '/api/v1/nodes');
    const empty = await api<{ nodes: ShoalNode[] }>(a, 'GET', '/api/v1/nodes?type=&owner=&parent=');
    assert.equal(empty.body.nodes.length, all.body.nodes.length);
  });

  test('a write to an unreachable owner answers 503', async () => {
    const [a, , c] = peers as [PeerProcess, PeerProcess, PeerProcess];
    const point = await create(c, { type: 'DataPoint', name: 'lonely' });
    await waitFor('a to have it', async () => (await nodeOn(a, point.id)) !== undefined);
    await c.kill();
    await waitFor(
      'c to be gone',
      async () => (await a.peers()).find((p) => p.id === c.id)?.state === 'disconnected',
    );
    const res = await api<{ error: { code: string } }>(a, 'PUT', `/api/v1/nodes/${point.id}/value`, {
      value: 1,
    });
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, 'SHOAL_OWNER_UNREACHABLE');
    // Reads still work: every server has the whole tree.
    assert.equal((await nodeOn(a, point.id))?.name, 'lonely');
  });
});

describe('replication along a chain of static peers (no beacons, no gossip dialling)', () => {
  const cluster = new TestCluster({ config: { gossipDial: false } });
  after(() => cluster.stop());

  test('A-B-C: writes relay both ways; cut apart, both ends keep writing and converge when B returns', async () => {
    const a = await cluster.start({ name: 'a', config: { beaconPort: cluster.beaconPort } });
    let b = await cluster.start({
      name: 'b',
      config: { beaconPort: cluster.beaconPort + 1, peers: [`127.0.0.1:${a.port}`] },
    });
    const c = await cluster.start({
      name: 'c',
      config: { beaconPort: cluster.beaconPort + 2, peers: [`127.0.0.1:${b.port}`] },
    });
    await waitFor('a and c to reach each other through b', async () => {
      const [fromA, fromC] = await Promise.all([a.peers(), c.peers()]);
      return (
        fromA.some((p) => p.id === c.id && p.route === b.id) &&
        fromC.some((p) => p.id === a.id && p.route === b.id)
      );
    });

    const onA = await create(a, { type: 'DataPoint', name: 'from-a' });
    await waitFor('c to have a node of a', async () => (await nodeOn(c, onA.id)) !== undefined);
    const set = await api<ShoalNode>(c, 'PUT', `/api/v1/nodes/${onA.id}/value`, { value: 7 });
    assert.equal(set.status, 200, 'a write from c reaches a through b');
    assert.equal((await nodeOn(a, onA.id))?.value, 7);
    const onC = await create(c, { type: 'DataPoint', name: 'from-c' });
    await waitFor('a to have a node of c', async () => (await nodeOn(a, onC.id)) !== undefined);

    // Cut the chain: both ends carry on writing their own nodes.
    await b.kill();
    await waitFor(
      'a and c apart',
      async () => (await a.peers()).find((p) => p.id === c.id)?.state === 'disconnected',
    );
    const aWrites = [];
    const cWrites = [];
    for (let i = 0; i < 20; i++) {
      aWrites.push(
        (await api<ShoalNode>(a, 'PUT', `/api/v1/nodes/${onA.id}/value`, { value: 100 + i })).status,
      );
      cWrites.push(
        (await api<ShoalNode>(c, 'PUT', `/api/v1/nodes/${onC.id}/value`, { value: 200 + i })).status,
      );
    }
    const lateA = await create(a, { type: 'Project', name: 'made-while-apart-on-a' });
    const lateC = await create(c, { type: 'Project', name: 'made-while-apart-on-c' });
    assert.ok([...aWrites, ...cWrites].every((s) => s === 200));
    // Writes across the cut are refused, not lost silently.
    const across = await api<{ error: { code: string } }>(a, 'PUT', `/api/v1/nodes/${onC.id}/value`, {
      value: 0,
    });
    assert.equal(across.status, 503);

    // Back on its old port: c knows b only by that static address.
    b = await cluster.start({
      name: 'b',
      dataDir: b.dataDir,
      port: b.port,
      config: { beaconPort: cluster.beaconPort + 1, peers: [`127.0.0.1:${a.port}`] },
    });
    for (const [peer, other] of [
      [a, c],
      [c, a],
      [b, a],
    ] as const) {
      await waitFor(
        `${peer.name} to converge`,
        async () => {
          const [x, y, p, q] = await Promise.all([
            nodeOn(peer, onA.id),
            nodeOn(peer, onC.id),
            nodeOn(peer, lateA.id),
            nodeOn(peer, lateC.id),
          ]);
          return x?.value === 119 && y?.value === 219 && p !== undefined && q !== undefined;
        },
        15_000,
      ).catch(async (err) => {
        for (const p of [a, b, c]) {
          const nodes = (await api<{ nodes: ShoalNode[] }>(p, 'GET', '/api/v1/nodes')).body.nodes;
          console.error(
            p.name,
            JSON.stringify(nodes.map((n) => [n.name, n.value, n.version, n.owner.slice(0, 4)])),
          );
          console.error(
            p.name,
            await p.metrics().then((t) =>
              t
                .split('\n')
                .filter((l) => l.startsWith('shoal_replication'))
                .join('\n'),
            ),
          );
          console.error(p.name, JSON.stringify((await p.peers()).map((x) => [x.name, x.state, x.route])));
        }
        throw err;
      });
      void other;
    }
    const history = await api<{ points: { value: number }[]; more: boolean }>(
      a,
      'GET',
      `/api/v1/nodes/${onC.id}/series`,
    );
    assert.equal(history.body.points.length, 20, 'every reading made while apart arrives, not just the last');
    assert.equal(history.body.more, false);
    const page = await api<{ points: { value: number }[]; more: boolean }>(
      a,
      'GET',
      `/api/v1/nodes/${onC.id}/series?limit=5`,
    );
    assert.deepEqual([page.body.points.length, page.body.more], [5, true]);
    const before = await api(a, 'GET', `/api/v1/nodes/${onC.id}/series?from=-1`);
    assert.equal(before.status, 400, 'a time before 1970 is no time');
  });
});

describe('live events and the client stream', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());

  test('SSE carries node changes; the WebSocket stream takes writes and answers after the owner commits', async () => {
    const [a, b] = await Promise.all([cluster.start({ name: 'a' }), cluster.start({ name: 'b' })]);
    await waitFor('a mesh', () => fullMesh([a, b]));
    const point = await create(b, { type: 'DataPoint', name: 'lamp', meta: { kind: 'boolean' } });
    await waitFor('a to have it', async () => (await nodeOn(a, point.id)) !== undefined);

    const controller = new AbortController();
    const sse = await fetch(`${a.url}/api/v1/events`, {
      headers: { authorization: `Bearer ${a.apiKey}` },
      signal: controller.signal,
    });
    const reader = sse.body!.getReader();
    let text = '';

    const { WebSocket } = await import('ws');
    const ws = new WebSocket(`${a.url.replace('http', 'ws')}/api/v1/stream`);
    const messages: Record<string, unknown>[] = [];
    ws.on('message', (data: Buffer) => messages.push(JSON.parse(data.toString())));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ t: 'auth', key: a.apiKey }));
    await waitFor('hello', () => messages.some((m) => m.t === 'hello'));
    for (let i = 0; i < 10; i++)
      ws.send(JSON.stringify({ t: 'set', rid: i, id: point.id, value: i % 2 === 0 }));
    ws.send(JSON.stringify({ t: 'set', rid: 'bad', id: point.id, value: 'maybe' }));
    ws.send('not json');
    // A message of a known type but the wrong shape is answered under its rid, naming the field.
    ws.send(JSON.stringify({ t: 'set', rid: 'shapeless', id: 42, value: 1 }));
    await waitFor('all results', () => messages.filter((m) => m.t === 'result').length === 12);
    const results = messages.filter((m) => m.t === 'result');
    assert.equal(results.filter((r) => r.ok === true).length, 10);
    const shapeless = results.find((r) => r.rid === 'shapeless') as { error: { message: string } };
    assert.match(shapeless.error.message, /^id: /);
    const bad = results.find((r) => r.rid === 'bad') as { ok: boolean; error: { code: string } };
    assert.equal(bad.ok, false);
    assert.equal(bad.error.code, 'SHOAL_BAD_REQUEST');
    assert.ok(
      messages.some((m) => m.t === 'error'),
      'garbage gets an error message, not a crash',
    );
    await waitFor(
      'ten value events on the stream',
      () =>
        messages.filter((m) => m.t === 'event' && (m.event as { type: string; op?: string }).op === 'value')
          .length === 10,
    );

    await waitFor('ten value events over SSE, none coalesced', async () => {
      const { value } = await reader.read();
      text += Buffer.from(value ?? new Uint8Array()).toString();
      return (
        text.split('\n\n').filter((block) => block.includes('event: node') && block.includes('"op":"value"'))
          .length >= 10
      );
    });
    controller.abort();
    ws.close();
  });

  test('the CLI lists, reads, sets, creates and deletes nodes', async () => {
    const [a] = cluster.peers as [PeerProcess];
    const shoal = (...args: string[]): Promise<{ code: number; out: string; err: string }> =>
      new Promise((resolve) =>
        execFile(process.execPath, [CLI, ...args, '--url', a.url, '--data', a.dataDir], (error, out, err) =>
          resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out, err }),
        ),
      );
    const made = await shoal('create', 'DataPoint', 'cli-point', '--meta', '{"unit":"W"}', '--json');
    assert.equal(made.code, 0, made.err);
    const node = JSON.parse(made.out) as ShoalNode;
    const set = await shoal('set', node.id, '42.5');
    assert.equal(set.code, 0, set.err);
    assert.match(set.out, /cli-point = 42\.5 W/);
    const got = await shoal('get', node.id, '--json');
    assert.equal((JSON.parse(got.out) as ShoalNode).value, 42.5);
    const list = await shoal('nodes');
    assert.match(list.out, /^NAME\s+TYPE\s+VALUE\s+OWNER/m);
    assert.match(list.out, /cli-point\s+DataPoint\s+42\.5 W\s+a\b/);
    const renamed = await shoal('update', node.id, '--name', 'cli-renamed');
    assert.match(renamed.out, /name\s+cli-renamed/);
    const history = await shoal('series', node.id);
    assert.match(history.out, /42\.5/);
    const removed = await shoal('delete', node.id);
    assert.equal(removed.code, 0);
    const missing = await shoal('get', node.id);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /SHOAL_NOT_FOUND/);
  });
});

/** `shoal watch ARGS` against `peer`; `out()` is what it printed so far. */
function watchCli(peer: PeerProcess, ...args: string[]): { child: ChildProcess; out: () => string } {
  const child = spawn(process.execPath, [CLI, 'watch', '--url', peer.url, '--data', peer.dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return { child, out: () => out };
}

describe('catching up after the log moved on', () => {
  // A tiny op log, compacted often: a peer away for a while must get snapshots.
  const cluster = new TestCluster({ config: { opLogKeep: 5, maintenanceIntervalMs: 100 } });
  after(() => cluster.stop());

  test('a peer that missed more than the op log holds gets a snapshot and converges', async () => {
    const [a, b] = await Promise.all([cluster.start({ name: 'a' }), cluster.start({ name: 'b' })]);
    await waitFor('a mesh', () => fullMesh([a, b]));
    const early = await create(a, { type: 'DataPoint', name: 'before' });
    await waitFor('b to have it', async () => (await nodeOn(b, early.id)) !== undefined);
    await b.stop();

    const made: ShoalNode[] = [];
    for (let i = 0; i < 12; i++) made.push(await create(a, { type: 'DataPoint', name: `while-away-${i}` }));
    for (let i = 0; i < 10; i++) await api(a, 'PUT', `/api/v1/nodes/${made[0]!.id}/value`, { value: i });
    await api(a, 'DELETE', `/api/v1/nodes/${early.id}`);
    // Let the maintenance compact a's log well past where b stopped.
    await new Promise((r) => setTimeout(r, 500));

    const back = await cluster.start({ name: 'b', dataDir: b.dataDir });
    await waitFor('b to converge from a snapshot', async () => {
      const nodes = (await api<{ nodes: ShoalNode[] }>(back, 'GET', `/api/v1/nodes?owner=${a.id}`)).body
        .nodes;
      const first = nodes.find((n) => n.id === made[0]!.id);
      return nodes.length === 13 && first?.value === 9 && !nodes.some((n) => n.id === early.id);
    });
    const text = await back.metrics();
    assert.match(text, /shoal_replication_snapshots_total\{direction="received"\} [1-9]/);
    // The readings of the ops the snapshot stood for come after it, each once.
    const values = async (peer: PeerProcess): Promise<unknown[]> =>
      (
        await api<{ points: { value: unknown }[] }>(peer, 'GET', `/api/v1/nodes/${made[0]!.id}/series`)
      ).body.points.map((p) => p.value);
    await waitFor('the readings b missed', async () => (await values(back)).length === 10);
    assert.deepEqual(await values(back), await values(a));
    assert.deepEqual(await values(back), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(sample(await back.metrics(), 'shoal_replication_readings_backfilled_total'), 10);
  });

  test('shoal watch prints changes as they happen', async () => {
    const [a] = cluster.peers.filter((p) => p.alive) as [PeerProcess];
    const { child, out } = watchCli(a);
    try {
      const point = await create(a, { type: 'DataPoint', name: 'watched', meta: { unit: 'lx' } });
      // The watcher connects at its own pace: keep changing the value until it shows one.
      let lux = 300;
      await waitFor('a change on screen', async () => {
        await api(a, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: ++lux });
        await new Promise((r) => setTimeout(r, 100));
        return /value DataPoint watched = \d+ lx {2}[0-9a-f-]{36}/.test(out());
      });
      await api(a, 'PATCH', `/api/v1/nodes/${point.id}`, { name: 'renamed-while-watched' });
      await waitFor('the rename on screen', () => /update DataPoint renamed-while-watched/.test(out()));
    } finally {
      child.kill('SIGINT');
    }
  });

  test('shoal watch waits for a peer that restarts, and goes on with its events', async () => {
    const lone = await cluster.start({ name: 'restarting' });
    const { child, out } = watchCli(lone);
    let again: PeerProcess | undefined;
    try {
      await waitFor(
        'the watcher connected',
        async () => sample(await lone.metrics(), 'shoal_event_clients') === 1,
      );
      await lone.kill();
      await waitFor('the watcher waiting for the peer', () => /cannot reach .*; trying again/.test(out()));
      again = await cluster.start({ name: 'restarting', dataDir: lone.dataDir, port: lone.port });
      const point = await create(again, { type: 'DataPoint', name: 'after-restart' });
      await waitFor('an event after the restart on screen', async () => {
        await api(again!, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: Date.now() });
        return out().includes('DataPoint after-restart');
      });
      assert.equal(child.exitCode, null, 'still watching');
    } finally {
      child.kill('SIGINT');
      await again?.kill();
    }
  });

  test('shoal watch --types prints only those events, and names an unknown type', async () => {
    const [a] = cluster.peers.filter((p) => p.alive) as [PeerProcess];
    const common = ['--url', a.url, '--data', a.dataDir];
    const refused = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [CLI, 'watch', '--types', 'node,nodes', ...common],
        (err, _o, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : child.exitCode, stderr }),
      );
    });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /SHOAL_BAD_REQUEST.*types: "nodes" is not one of/);
    // The join below is a one-off peer event: the watcher must be connected before it.
    const clients = async (): Promise<number> => sample(await a.metrics(), 'shoal_event_clients');
    await waitFor('no event clients left from earlier tests', async () => (await clients()) === 0);
    const { child, out } = watchCli(a, '--types', 'peer', '--json');
    try {
      await waitFor('the watcher connected', async () => (await clients()) === 1);
      const point = await create(a, { type: 'DataPoint', name: 'unwatched' });
      // A peer event to see: a newcomer joins while the node's value keeps changing.
      const newcomer = await cluster.start({ name: 'seen-by-watch' });
      try {
        await waitFor('the newcomer on screen', async () => {
          await api(a, 'PUT', `/api/v1/nodes/${point.id}/value`, { value: Date.now() });
          return out().includes(newcomer.id);
        });
      } finally {
        await newcomer.kill();
      }
      const types = out()
        .trim()
        .split('\n')
        .map((line) => (JSON.parse(line) as { type: string }).type);
      assert.ok(types.length > 0 && types.every((type) => type === 'peer'), types.join(' '));
    } finally {
      child.kill('SIGINT');
    }
  });
});
