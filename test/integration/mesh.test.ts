/**
 * The mesh with real peers as child processes on loopback: formation, failure detection, healing,
 * graceful leave, and static peers joined through gossip.
 */

import assert from 'node:assert/strict';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { testDefaults } from '../../src/config.ts';
import { fullMesh, stateOf, TestCluster, waitFor } from '../support/cluster.ts';
import { sample } from '../support/prometheus.ts';

/** The generation of a peer's last start, from its data directory. */
function generationIn(dataDir: string): number {
  return (JSON.parse(readFileSync(join(dataDir, 'identity.json'), 'utf8')) as { generation: number })
    .generation;
}

const { failureTimeoutMs } = testDefaults() as { failureTimeoutMs: number };

describe('a mesh of real peers on loopback', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());

  test('five peers find each other by beacon and form a full mesh', async () => {
    const peers = await Promise.all([1, 2, 3, 4, 5].map((i) => cluster.start({ name: `p${i}` })));
    // Direct links: a peer heard of through another is connected (through it) before its own link
    // is up, and the checks below are of the full mesh.
    await waitFor('a full mesh of 5', () => fullMesh(peers, { direct: true }));
    for (const peer of peers) {
      const view = await peer.peers();
      assert.equal(view.length, 4, `${peer.name} knows 4 others`);
      for (const other of view) {
        assert.equal(other.state, 'connected');
        assert.equal(other.route, 'direct');
        assert.equal(other.address, '127.0.0.1');
        assert.equal(other.platform, 'LINUX');
        assert.match(other.version, /^\d+\.\d+\.\d+/);
        assert.ok(other.name.startsWith('p'));
      }
    }
    // Peers that dialled each other at once keep one link per pair, the same one on both sides.
    await waitFor('one link per pair', async () => {
      const texts = await Promise.all(peers.map((p) => p.metrics()));
      return texts.every((t) => sample(t, 'shoal_links', { phase: 'up' }) === 4);
    });
    // RTT comes with the first heartbeat echo.
    await waitFor('RTTs', async () => (await peers[0]!.peers()).every((p) => typeof p.rttMs === 'number'));
  });

  test('kill -9 of a peer is detected, and it heals after a restart with the same id', async () => {
    const [a, b, victim] = cluster.peers as [
      (typeof cluster.peers)[0],
      (typeof cluster.peers)[0],
      (typeof cluster.peers)[0],
    ];
    const id = victim.id;
    const killedAt = Date.now();
    await victim.kill();
    await waitFor(
      'the others to mark the killed peer disconnected',
      async () =>
        (await stateOf(a, victim))?.state === 'disconnected' &&
        (await stateOf(b, victim))?.state === 'disconnected',
      failureTimeoutMs + 2000,
    );
    assert.ok(Date.now() - killedAt < failureTimeoutMs + 2000);
    // The rest carry on.
    assert.ok(await fullMesh(cluster.peers.filter((p) => p.alive)));

    const killedGeneration = generationIn(victim.dataDir);
    const back = await cluster.start({ name: victim.name, dataDir: victim.dataDir });
    assert.equal(back.id, id, 'the id survives a restart');
    await waitFor('the mesh to heal', () => fullMesh(cluster.peers.filter((p) => p.alive)));
    const seen = await stateOf(a, back);
    assert.equal(seen?.state, 'connected');
    assert.ok(Number(seen?.settings.generation) > killedGeneration, 'a restart is a new generation');
  });

  test('a peer stopped with Ctrl-C is marked disconnected at once', async () => {
    const alive = cluster.peers.filter((p) => p.alive);
    const leaver = alive[1]!;
    const others = alive.filter((p) => p !== leaver);
    const t0 = Date.now();
    await leaver.stop();
    await waitFor(
      'everyone to see the leave',
      async () =>
        (await Promise.all(others.map((o) => stateOf(o, leaver)))).every((v) => v?.state === 'disconnected'),
      5000,
      5,
    );
    const took = Date.now() - t0;
    assert.ok(took < failureTimeoutMs, `leave seen in ${took} ms, before any timeout could fire`);
    assert.equal(await leaver.exited, 0, 'a graceful stop exits 0');
    // It stays disconnected: nobody redials a peer that said goodbye.
    await new Promise((r) => setTimeout(r, failureTimeoutMs));
    assert.equal((await stateOf(others[0]!, leaver))?.state, 'disconnected');
  });

  test('a silent peer (SIGSTOP, like a pulled plug) times out, and comes back by itself (SIGCONT)', async () => {
    const alive = cluster.peers.filter((p) => p.alive);
    const frozen = alive[0]!;
    const watcher = alive[1]!;
    frozen.child.kill('SIGSTOP');
    try {
      const t0 = Date.now();
      await waitFor(
        'the silent peer to be marked disconnected',
        async () => (await stateOf(watcher, frozen))?.state === 'disconnected',
        failureTimeoutMs * 4,
      );
      const took = Date.now() - t0;
      assert.ok(took >= failureTimeoutMs * 0.5, `not before the failure timeout (${took} ms)`);
    } finally {
      frozen.child.kill('SIGCONT');
    }
    await waitFor(
      'the mesh to heal after SIGCONT',
      () => fullMesh(cluster.peers.filter((p) => p.alive)),
      10_000,
    );
  });
});

describe('restarts and forgetting', () => {
  const cluster = new TestCluster({ config: { peerTtlMs: 1000 } });
  after(() => cluster.stop());

  test('a peer restarted before its old link timed out is taken back at once (new generation)', async () => {
    const a = await cluster.start({ name: 'a' });
    const old = await cluster.start({ name: 'b' });
    await waitFor('a and b linked', () => fullMesh([a, old]));
    // Freeze the old process, so its link to a stays open but silent, and start the same server
    // (its data directory, so the same id) again before a's failure timeout could notice. The
    // frozen process may hold its database's write lock (replicated ops wait a few ms for their
    // commit), so the new one runs on a copy of the directory: same id, next generation.
    old.child.kill('SIGSTOP');
    const t0 = Date.now();
    const oldGeneration = generationIn(old.dataDir);
    const copy = `${old.dataDir}-again`;
    cpSync(old.dataDir, copy, { recursive: true });
    const again = await cluster.start({ name: 'b', dataDir: copy });
    assert.equal(again.id, old.id);
    try {
      await waitFor(
        'a to link to the new generation',
        async () => {
          const view = await stateOf(a, again);
          return (
            view?.state === 'connected' &&
            Number(view.settings.generation) > oldGeneration &&
            view.port === again.port
          );
        },
        5000,
        5,
      );
      const took = Date.now() - t0;
      assert.ok(took < 3000, `relinked in ${took} ms`);
    } finally {
      await old.kill();
    }
  });

  test('a peer gone for longer than peerTtlMs is forgotten', async () => {
    const [a, b] = cluster.peers.filter((p) => p.alive) as [
      (typeof cluster.peers)[0],
      (typeof cluster.peers)[0],
    ];
    await b.kill();
    await waitFor('b to be disconnected', async () => (await stateOf(a, b))?.state === 'disconnected');
    await waitFor('b to be forgotten', async () => (await stateOf(a, b)) === undefined, 5000);
  });
});

describe('a restart while a peer is down', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());

  test('the restarted server still lists the peer that is down, and links to it when it is back', async () => {
    const a = await cluster.start({ name: 'a' });
    const b = await cluster.start({ name: 'b' });
    await waitFor('a and b linked', () => fullMesh([a, b]));
    await b.kill(); // Unplugged: no goodbye.
    await waitFor('b to be disconnected', async () => (await stateOf(a, b))?.state === 'disconnected');
    await a.stop();
    const again = await cluster.start({ name: 'a', dataDir: a.dataDir });
    const view = await stateOf(again, b);
    assert.equal(view?.state, 'disconnected', 'listed at once, as it was');
    assert.equal(view?.name, 'b');
    const back = await cluster.start({ name: 'b', dataDir: b.dataDir });
    await waitFor('b linked again', () => fullMesh([again, back]));
  });
});

describe('static peers and membership gossip', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());

  test('a peer that hears no beacons joins through one static address and learns every other peer', async () => {
    const lan = await Promise.all(['a', 'b', 'c'].map((name) => cluster.start({ name })));
    await waitFor('the LAN mesh', () => fullMesh(lan));
    const first = lan[0]!;
    // Another beacon port: it hears none of the LAN's beacons, and they hear none of its own.
    const remote = await cluster.start({
      name: 'remote',
      config: { beaconPort: cluster.beaconPort + 1, peers: [`127.0.0.1:${first.port}`] },
    });
    await waitFor('the remote peer to be in a full mesh', () => fullMesh([...lan, remote]));
    const view = await remote.peers();
    assert.deepEqual(view.map((p) => p.name).sort(), ['a', 'b', 'c']);
    // Reached through `a` first (a full mesh counts relayed routes), then dialled directly: the
    // dials of the peers learned by gossip may still be under way when the mesh is whole.
    await waitFor('gossip-learned peers to be dialled directly', () =>
      fullMesh([...lan, remote], { direct: true }),
    );
  });
});

describe('a chain of static peers without beacons or gossip dialling', () => {
  const cluster = new TestCluster({ config: { gossipDial: false } });
  after(() => cluster.stop());

  test('A-B-C: the ends reach each other through B, and lose each other when B dies', async () => {
    // Each on a beacon port of its own: no beacons between them, only the static links.
    const a = await cluster.start({ name: 'a', config: { beaconPort: cluster.beaconPort } });
    const b = await cluster.start({
      name: 'b',
      config: { beaconPort: cluster.beaconPort + 1, peers: [`127.0.0.1:${a.port}`] },
    });
    const c = await cluster.start({
      name: 'c',
      config: { beaconPort: cluster.beaconPort + 2, peers: [`127.0.0.1:${b.port}`] },
    });
    await waitFor('routes along the chain', async () => {
      const [fromA, fromC] = [await stateOf(a, c), await stateOf(c, a)];
      return fromA?.state === 'connected' && fromC?.state === 'connected';
    });
    assert.equal((await stateOf(a, c))?.route, b.id, 'a reaches c through b');
    assert.equal((await stateOf(c, a))?.route, b.id, 'c reaches a through b');
    assert.equal((await stateOf(a, b))?.route, 'direct');
    assert.equal((await stateOf(a, c))?.name, 'c', 'metadata travels with the membership records');

    await b.kill();
    await waitFor('the ends to lose each other', async () => {
      const [fromA, fromC] = [await stateOf(a, c), await stateOf(c, a)];
      return fromA?.state === 'disconnected' && fromC?.state === 'disconnected';
    });
  });
});
