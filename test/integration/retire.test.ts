/**
 * Retiring a server that is gone for good, between real peers on loopback: through the API and
 * the `shoal forget` command, its nodes go from every server (a server that was away at the time
 * included), and a copy of it started later is refused.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, test } from 'node:test';
import type { RetiredServer, ShoalNode } from '../../src/store/store.ts';
import {
  api,
  CLI,
  createNode,
  fullMesh,
  type PeerProcess,
  stateOf,
  TestCluster,
  waitFor,
} from '../support/cluster.ts';
import { sample } from '../support/prometheus.ts';

function forget(peer: PeerProcess, id: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, 'forget', id, '--url', peer.url, '--api-key', peer.apiKey],
      { env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function has(peer: PeerProcess, id: string): Promise<boolean> {
  return (await api<ShoalNode>(peer, 'GET', `/api/v1/nodes/${id}`)).status === 200;
}

describe('retiring a server that is gone for good', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());

  test('its nodes go everywhere, also from a server away at the time, and a copy of it is refused', async () => {
    const a = await cluster.start({ name: 'a' });
    const b = await cluster.start({ name: 'b' });
    let dead = await cluster.start({ name: 'dead' });
    const away = await cluster.start({ name: 'away' });
    const everyone = [a, b, dead, away];
    await waitFor('a mesh of 4', () => fullMesh(everyone), 15_000);

    const project = await createNode(dead, { type: 'Project', name: 'greenhouse' });
    const point = await createNode(dead, { type: 'DataPoint', name: 'soil', parent: project.id });
    // A node of another server under the dead one's project goes with it (the usual cascade).
    const below = await createNode(a, { type: 'DataPoint', name: 'lamp', parent: project.id });
    const kept = await createNode(b, { type: 'DataPoint', name: 'outside' });
    for (const peer of [a, b, away]) {
      await waitFor(
        `${peer.name} has the nodes`,
        async () => (await has(peer, point.id)) && has(peer, below.id),
      );
    }

    const connected = await api<{ error: { code: string } }>(a, 'DELETE', `/api/v1/peers/${dead.id}`);
    assert.equal(connected.status, 409, 'a connected server is not retired');
    assert.equal(connected.body.error.code, 'SHOAL_CONFLICT');
    const itself = await api<{ error: { code: string } }>(a, 'DELETE', `/api/v1/peers/${a.id}`);
    assert.equal(itself.status, 400);
    const unknown = await api<{ error: { code: string } }>(
      a,
      'DELETE',
      '/api/v1/peers/0e3f4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b',
    );
    assert.equal(unknown.status, 404);

    await away.stop();
    await dead.kill();
    await waitFor(
      'a to see the dead server gone',
      async () => (await stateOf(a, dead))?.state === 'disconnected',
    );

    const run = await forget(a, dead.id);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /retired dead/);
    // Its Server node, project and data point (a's node below is a's, deleted by a's sweep).
    assert.match(run.stdout, /: 3 of its nodes deleted here/);

    for (const peer of [a, b]) {
      await waitFor(`${peer.name} without the dead server's nodes`, async () => {
        const gone = await Promise.all([project.id, point.id, dead.id, below.id].map((id) => has(peer, id)));
        return gone.every((present) => !present);
      });
      assert.ok(await has(peer, kept.id), 'nodes of others stay');
      assert.equal(await stateOf(peer, dead), undefined, 'no longer listed as a peer');
      const { body } = await api<{ retired: RetiredServer[] }>(peer, 'GET', '/api/v1/peers/retired');
      assert.deepEqual(
        body.retired.map((r) => [r.id, r.name, r.by]),
        [[dead.id, 'dead', a.id]],
      );
    }
    const again = await api<{ retired: RetiredServer; removedNodes: number }>(
      b,
      'DELETE',
      `/api/v1/peers/${dead.id}`,
    );
    assert.equal(again.status, 200, 'retiring twice answers the record held');
    assert.equal(again.body.retired.by, a.id);

    // The server that was away hears of it when it comes back.
    const back = await cluster.start({ name: 'away', dataDir: away.dataDir });
    await waitFor("away without the dead server's nodes", async () => {
      const { body } = await api<{ retired: RetiredServer[] }>(back, 'GET', '/api/v1/peers/retired');
      return body.retired.length === 1 && !(await has(back, point.id)) && !(await has(back, below.id));
    });

    // A copy of the dead server put back later is refused by the first server it links to, and
    // told why; it then stops dialling (so not every server need have refused it by then).
    dead = await cluster.start({ name: 'dead', dataDir: dead.dataDir });
    const refused = async (): Promise<number> =>
      (
        await Promise.all(
          [a, b, back].map(async (p) =>
            sample(await p.metrics(), 'shoal_handshakes_rejected_total', { reason: 'retired' }),
          ),
        )
      ).reduce((x, y) => x + y, 0);
    await waitFor(
      'the copy refused',
      async () =>
        (await refused()) > 0 &&
        sample(await dead.metrics(), 'shoal_links_closed_total', { reason: 'retired' }) > 0,
    );
    // Told it was retired, the copy stops dialling (no handshake a few hundred ms apart, for ever)
    // and beaconing.
    await new Promise((r) => setTimeout(r, 500));
    const refusedBefore = await refused();
    const beaconsBefore = sample(await dead.metrics(), 'shoal_beacons_sent_total');
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await refused(), refusedBefore, 'the copy dials no more');
    assert.equal(sample(await dead.metrics(), 'shoal_beacons_sent_total'), beaconsBefore, 'nor beacons');
    for (const peer of [a, b, back]) {
      assert.equal(await stateOf(peer, dead), undefined, `${peer.name} does not list the copy`);
      assert.equal(await has(peer, point.id), false, `${peer.name} did not get its nodes back`);
    }
    assert.ok(
      (await dead.peers()).every((p) => p.state !== 'connected'),
      'the copy is linked to no one',
    );
  });
});
