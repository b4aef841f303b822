/**
 * The seed's example, end to end on three real servers: a living-room temperature on A; on B a
 * HighThreshold and a LowThreshold (with hysteresis) on A's temperature that switch B's AC; on C
 * a Compute that averages the rooms into a data point and an OutgoingWebHook that posts every new
 * average to a local HTTP receiver. Then C's plug is pulled: the Compute and the webhook go on on
 * A or B, never on two servers at once, and move back to C when it returns (meta.prefer).
 */

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { ShoalNode } from '../../src/store/store.ts';
import {
  api,
  createNode as create,
  fullMesh,
  type PeerProcess,
  TestCluster,
  waitFor,
} from '../support/cluster.ts';

interface Post {
  at: number;
  average: number;
  runner: string;
}

/** An automation node's run state as `peer` shows it. */
interface RunState {
  runs: number;
  runner: string;
}

async function node(peer: PeerProcess, id: string): Promise<ShoalNode & { state?: RunState }> {
  return (await api<ShoalNode & { state?: RunState }>(peer, 'GET', `/api/v1/nodes/${id}`)).body;
}

async function value(peer: PeerProcess, id: string): Promise<unknown> {
  return (await node(peer, id)).value;
}

describe('cross-server automation: the three-room example', () => {
  const cluster = new TestCluster();
  const posts: Post[] = [];
  let receiver: Server;
  let hookUrl = '';
  let a: PeerProcess;
  let b: PeerProcess;
  let c: PeerProcess;
  const ids: Record<string, string> = {};

  before(async () => {
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        const parsed = JSON.parse(body) as { average: number; runner: string };
        posts.push({ at: Date.now(), ...parsed });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const address = receiver.address();
    hookUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/dashboard`;
    [a, b, c] = (await Promise.all(
      ['living-room', 'bedroom', 'central'].map((name) => cluster.start({ name })),
    )) as [PeerProcess, PeerProcess, PeerProcess];
    await waitFor('a full mesh', () => fullMesh([a, b, c]));
  });
  after(async () => {
    await cluster.stop();
    receiver.close();
  });

  test('built from the API: thresholds on A switch B, a Compute and a webhook run on C', async () => {
    const livingTemp = await create(a, { type: 'DataPoint', name: 'temperature', meta: { unit: '°C' } });
    const bedroomTemp = await create(b, { type: 'DataPoint', name: 'temperature', meta: { unit: '°C' } });
    const ac = await create(b, { type: 'DataPoint', name: 'AC', meta: { kind: 'boolean' }, value: false });
    await waitFor(
      'B to see A’s temperature',
      async () => (await api(b, 'GET', `/api/v1/nodes/${livingTemp.id}`)).status === 200,
    );
    const high = await create(b, {
      type: 'HighThreshold',
      name: 'too warm',
      parent: livingTemp.id,
      meta: { threshold: 25, hysteresis: 1 },
    });
    await create(b, {
      type: 'SetValue',
      name: 'AC on',
      parent: high.id,
      meta: { target: ac.id, value: true },
    });
    const low = await create(b, {
      type: 'LowThreshold',
      name: 'cool again',
      parent: livingTemp.id,
      meta: { threshold: 22, hysteresis: 1 },
    });
    await create(b, {
      type: 'SetValue',
      name: 'AC off',
      parent: low.id,
      meta: { target: ac.id, value: false },
    });

    // The average lives on A (a data point needs a live owner to be written); C computes it.
    await waitFor('C to see both temperatures', async () =>
      (
        await Promise.all([livingTemp.id, bedroomTemp.id].map((id) => api(c, 'GET', `/api/v1/nodes/${id}`)))
      ).every((r) => r.status === 200),
    );
    const project = await create(c, { type: 'Project', name: 'house' });
    await waitFor(
      'A to see the project',
      async () => (await api(a, 'GET', `/api/v1/nodes/${project.id}`)).status === 200,
    );
    const average = await create(a, {
      type: 'DataPoint',
      name: 'average temperature',
      parent: project.id,
      owner: a.id,
    });
    await waitFor(
      'C to see the average',
      async () => (await api(c, 'GET', `/api/v1/nodes/${average.id}`)).status === 200,
    );
    const compute = await create(c, {
      type: 'Compute',
      name: 'average of rooms',
      parent: project.id,
      meta: {
        op: 'average',
        inputs: [livingTemp.id, bedroomTemp.id],
        target: average.id,
        placement: 'any',
        prefer: c.id,
      },
    });
    const hook = await create(c, {
      type: 'OutgoingWebHook',
      name: 'post to dashboard',
      parent: average.id,
      meta: {
        url: hookUrl,
        body: '{"average": {{value}}, "runner": "{{runner}}"}',
        placement: 'any',
        prefer: c.id,
        retries: 1,
      },
    });
    Object.assign(ids, {
      livingTemp: livingTemp.id,
      bedroomTemp: bedroomTemp.id,
      ac: ac.id,
      average: average.id,
      compute: compute.id,
      hook: hook.id,
    });

    // A loop is refused: a Calculation that writes its own input.
    const loop = await api<{ error: { code: string; message: string } }>(c, 'POST', '/api/v1/nodes', {
      type: 'Calculation',
      name: 'feedback',
      parent: project.id,
      meta: { formula: 't + 1', inputs: { t: livingTemp.id }, target: livingTemp.id },
    });
    assert.equal(loop.status, 400);
    assert.match(loop.body.error.message, /wiring loop/);

    // Wait for the placed jobs to settle on C (startup and settle delays), then feed readings.
    await waitFor(
      'the Compute to run on C',
      async () => {
        await api(a, 'PUT', `/api/v1/nodes/${livingTemp.id}/value`, { value: 20 });
        await api(b, 'PUT', `/api/v1/nodes/${bedroomTemp.id}/value`, { value: 22 });
        return (await node(a, compute.id)).state?.runner === c.id && (await value(a, average.id)) === 21;
      },
      20_000,
      200,
    );
    await waitFor('the webhook to post 21 from C', () =>
      posts.some((p) => p.average === 21 && p.runner === c.id),
    );

    // Warm on A: B switches its AC on; hovering inside the hysteresis does nothing more.
    for (const t of [24, 26, 25.5, 26, 24.5, 25.2])
      await api(a, 'PUT', `/api/v1/nodes/${livingTemp.id}/value`, { value: t });
    await waitFor('the AC on', async () => (await value(b, ac.id)) === true);
    for (const t of [23, 21.5]) await api(a, 'PUT', `/api/v1/nodes/${livingTemp.id}/value`, { value: t });
    await waitFor('the AC off', async () => (await value(b, ac.id)) === false);
    // C has the AC's whole history once the last switch has reached it; then no more may come.
    const history = async (): Promise<boolean[]> =>
      (
        await api<{ points: { value: boolean }[] }>(c, 'GET', `/api/v1/nodes/${ac.id}/series`)
      ).body.points.map((p) => p.value);
    await waitFor('the history on C', async () => (await history()).length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await history(), [false, true, false], 'no chatter: on once, off once');
    // Run state travels by its own messages: A shows it once B's word has arrived.
    const highState = await waitFor('the threshold’s state on A', async () => (await node(a, high.id)).state);
    assert.equal(highState.runner, b.id, 'the threshold runs on its owner, B');
    assert.equal(highState.runs, 1, 'fired once');
  });

  test("pulling C's plug: the Compute and the webhook go on on A or B, once, and come back to C", async () => {
    await c.kill();
    const killedAt = Date.now();
    let reading = 30;
    // Readings keep coming; the jobs must resume elsewhere within seconds.
    const resumed = await waitFor(
      'the webhook to post from A or B',
      async () => {
        await api(a, 'PUT', `/api/v1/nodes/${ids.livingTemp}/value`, { value: ++reading });
        await new Promise((r) => setTimeout(r, 100));
        return posts.find((p) => p.at > killedAt && (p.runner === a.id || p.runner === b.id));
      },
      15_000,
      10,
    );
    const resumeMs = resumed.at - killedAt;
    assert.ok(resumeMs < 10_000, `resumed after ${resumeMs} ms`);
    const runner = resumed.runner;
    // One runner at a time: every later post comes from it, each average once.
    const before = posts.length;
    for (let i = 0; i < 5; i++) {
      await api(b, 'PUT', `/api/v1/nodes/${ids.bedroomTemp}/value`, { value: 10 + i });
      await waitFor(`post ${i}`, () => posts.length >= before + i + 1);
    }
    await new Promise((r) => setTimeout(r, 300));
    const later = posts.slice(before);
    assert.ok(
      later.every((p) => p.runner === runner),
      'a single runner while C is away',
    );
    const averages = later.map((p) => p.average);
    assert.equal(new Set(averages).size, averages.length, 'no average posted twice');

    // C returns (same data, so the same id) and takes its jobs back.
    const back = await cluster.start({ name: 'central', dataDir: c.dataDir });
    const returnedAt = Date.now();
    await waitFor(
      'the webhook to post from C again',
      async () => {
        await api(a, 'PUT', `/api/v1/nodes/${ids.livingTemp}/value`, { value: ++reading });
        await new Promise((r) => setTimeout(r, 100));
        return posts.some((p) => p.at > returnedAt && p.runner === back.id);
      },
      20_000,
      10,
    );
    // After the handover, nothing more from the stand-in.
    const handover = posts.findIndex((p) => p.at > returnedAt && p.runner === back.id);
    await api(a, 'PUT', `/api/v1/nodes/${ids.livingTemp}/value`, { value: ++reading });
    await api(a, 'PUT', `/api/v1/nodes/${ids.livingTemp}/value`, { value: ++reading });
    await waitFor('two more posts', () => posts.length >= handover + 3);
    assert.ok(
      posts.slice(handover).every((p) => p.runner === back.id),
      'only C posts after it took over',
    );
    console.log(`# webhook resumed ${resumeMs} ms after C was killed`);
  });

  test('a Button and an IncomingWebHook fire their executors', async () => {
    const lamp = await create(a, {
      type: 'DataPoint',
      name: 'lamp',
      meta: { kind: 'boolean' },
      value: false,
    });
    const button = await create(a, { type: 'Button', name: 'lamp button' });
    await create(a, {
      type: 'SetValue',
      name: 'lamp on',
      parent: button.id,
      meta: { target: lamp.id, value: true },
    });
    const fired = await api<{ fired: string[] }>(b, 'POST', `/api/v1/nodes/${button.id}/fire`);
    assert.equal(fired.status, 200);
    await waitFor('the lamp on', async () => (await value(b, lamp.id)) === true);

    const hook = await create(a, { type: 'IncomingWebHook', name: 'doorbell', meta: { path: 'doorbell' } });
    await create(a, {
      type: 'SetValue',
      name: 'lamp off',
      parent: hook.id,
      meta: { target: lamp.id, value: false },
    });
    await waitFor(
      'b to know the hook',
      async () => (await api(b, 'GET', `/api/v1/nodes/${hook.id}`)).status === 200,
    );
    const called = await api<{ fired: string[] }>(b, 'POST', '/api/v1/hooks/doorbell', { who: 'postman' });
    assert.deepEqual(called.body.fired, [hook.id]);
    await waitFor('the lamp off', async () => (await value(a, lamp.id)) === false);
    assert.equal((await api(b, 'POST', '/api/v1/hooks/nobody-home')).status, 404);
    // A device that sends text: the payload is the string.
    const texted = await fetch(`${b.url}/api/v1/hooks/doorbell`, {
      method: 'POST',
      headers: { authorization: `Bearer ${b.apiKey}`, 'content-type': 'text/plain' },
      body: 'door open',
    });
    assert.equal(texted.status, 200, await texted.text());
    await waitFor('the text payload', async () => {
      const held = await api<{ state?: { result?: unknown } }>(b, 'GET', `/api/v1/nodes/${hook.id}`);
      return held.body.state?.result === 'door open';
    });
    // A payload too deep to write anywhere is refused, and the trigger keeps its last state.
    let deep: unknown = 'bell';
    for (let i = 0; i < 40; i++) deep = [deep];
    const refused = await api<{ error: { code: string; message: string } }>(
      b,
      'POST',
      `/api/v1/nodes/${button.id}/fire`,
      deep,
    );
    assert.equal(refused.status, 400);
    assert.match(refused.body.error.message, /nested deeper than 32/);
    assert.equal((await api(b, 'GET', `/api/v1/nodes/${button.id}`)).status, 200);
  });
});

describe('timers: CronTimer and SilentAlarm', () => {
  const cluster = new TestCluster();
  after(() => cluster.stop());

  test('a CronTimer fires on its schedule; a SilentAlarm fires when its data point falls silent', async () => {
    const peer = await cluster.start({ name: 'timers' });
    const tick = await create(peer, {
      type: 'CronTimer',
      name: 'every second',
      meta: { cron: '* * * * * *' },
    });
    const beat = await create(peer, {
      type: 'DataPoint',
      name: 'beat',
      meta: { kind: 'boolean' },
      value: false,
    });
    await create(peer, {
      type: 'SetValue',
      name: 'beat on',
      parent: tick.id,
      meta: { target: beat.id, value: true },
    });
    await waitFor(
      'the timer to fire and its executor to run',
      async () => (await value(peer, beat.id)) === true,
      5000,
    );
    await waitFor('a second fire', async () => ((await node(peer, tick.id)).state?.runs ?? 0) >= 2, 5000);

    const sensor = await create(peer, { type: 'DataPoint', name: 'freezer sensor' });
    const silent = await create(peer, {
      type: 'SilentAlarm',
      name: 'sensor silent',
      parent: sensor.id,
      meta: { maxAgeMs: 600 },
    });
    const alarm = await create(peer, {
      type: 'DataPoint',
      name: 'freezer alarm',
      meta: { kind: 'boolean' },
      value: false,
    });
    await create(peer, {
      type: 'SetValue',
      name: 'raise alarm',
      parent: silent.id,
      meta: { target: alarm.id, value: true },
    });
    // Readings every 200 ms keep it quiet ...
    for (let i = 0; i < 8; i++) {
      await api(peer, 'PUT', `/api/v1/nodes/${sensor.id}/value`, { value: -18 - i / 10 });
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(await value(peer, alarm.id), false, 'no alarm while readings come');
    // ... and silence raises the alarm.
    await waitFor('the silent alarm', async () => (await value(peer, alarm.id)) === true, 3000);
  });
});
