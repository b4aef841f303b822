/**
 * Replication of the node tree between real peers on loopback: writes anywhere, reads
 * everywhere, forwarding to owners, relays, partitions, crashes and deletes.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { ShoalNode } from '../../src/store/store.ts';
import { fullMesh, type PeerProcess, TestCluster, waitFor } from '../support/cluster.ts';

async function api<T = unknown>(
  peer: PeerProcess,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await fetch(peer.url + path, {
    method,
    headers: {
      authorization: `Bearer ${peer.apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function create(peer: PeerProcess, node: Record<string, unknown>): Promise<ShoalNode> {
  const res = await api<ShoalNode>(peer, 'POST', '/api/v1/nodes', node);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
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
      ['PUT', `/api/v1/nodes/${point.id}/value`, { value: 'hot' }, 400, 'SHOAL_BAD_REQUEST'],
      ['PUT', `/api/v1/nodes/${point.id}/value`, {}, 400, 'SHOAL_BAD_REQUEST'],
      ['PUT', `/api/v1/nodes/${b.id}/value`, { value: 1 }, 400, 'SHOAL_BAD_REQUEST'],
      ['PUT', '/api/v1/nodes/no-such-node/value', { value: 1 }, 404, 'SHOAL_NOT_FOUND'],
      ['GET', '/api/v1/nodes/no-such-node', undefined, 404, 'SHOAL_NOT_FOUND'],
      ['PATCH', `/api/v1/nodes/${point.id}`, {}, 400, 'SHOAL_BAD_REQUEST'],
      ['DELETE', `/api/v1/nodes/${a.id}`, undefined, 400, 'SHOAL_BAD_REQUEST'],
      [
        'PUT',
        `/api/v1/nodes/${point.id}/value`,
        { value: 'x'.repeat(2 * 1024 * 1024) },
        413,
        'SHOAL_TOO_LARGE',
      ],
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
    const renamed = await api<ShoalNode>(a, 'PATCH', `/api/v1/nodes/${point.id}`, {
      name: 'renamed',
      meta: { kind: 'number', unit: 'K' },
    });
    assert.equal(renamed.status, 200);
    assert.equal(renamed.body.name, 'renamed');
    assert.equal(renamed.body.meta.unit, 'K');
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
