/**
 * The mesh with real peers as child processes on loopback: formation, failure detection, healing,
 * graceful leave, and static peers joined through gossip.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { fullMesh, stateOf, TestCluster, waitFor } from '../support/cluster.ts';

describe('a mesh of real peers on loopback', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());

  test('five peers find each other by beacon and form a full mesh', async () => {
    const peers = await Promise.all([1, 2, 3, 4, 5].map((i) => cluster.start({ name: `p${i}` })));
    await waitFor('a full mesh of 5', () => fullMesh(peers));
    for (const peer of peers) {
      const view = await peer.peers();
      assert.equal(view.length, 4, `${peer.name} knows 4 others`);
      for (const other of view) {
        assert.equal(other.state, 'connected');
        assert.equal(other.route, 'direct');
        assert.equal(other.address, '127.0.0.1');
        assert.ok(typeof other.rttMs === 'number' || other.rttMs === null);
        assert.equal(other.platform, 'LINUX');
        assert.match(other.version, /^\d+\.\d+\.\d+/);
      }
    }
  });
});
