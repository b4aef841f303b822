/**
 * The living part of `shoal demo`: a project with a temperature and a humidity in every room,
 * each room's data points owned by a different peer, values drifting every second; an average of
 * the rooms computed wherever the mesh places it; and a fan that a HighThreshold switches on when
 * the first room gets warm. Everything is made and written through the peers' own API, like any
 * client would.
 */

import type { ReadyMessage } from './start.ts';

interface Made {
  id: string;
}

export interface DemoHouse {
  /** Stops the drifting values. */
  stop(): void;
  project: string;
}

export async function seedDemoHouse(
  peers: ReadyMessage[],
  apiKey: string,
  intervalMs = 1000,
): Promise<DemoHouse> {
  const call = async <T>(peer: ReadyMessage, method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(peer.url + path, {
      method,
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  const first = peers[0]!;
  const project = await call<Made>(first, 'POST', '/api/v1/nodes', {
    type: 'Project',
    name: 'Demo house',
    meta: { description: 'Made by shoal demo: every room is kept by another server.' },
  });
  // Each peer keeps its own room; the nodes are made through the first peer and forwarded.
  const rooms = ['Living room', 'Bedroom', 'Kitchen', 'Study', 'Hall', 'Attic', 'Cellar', 'Garage'];
  const points: { id: string; owner: ReadyMessage; value: number; min: number; max: number; step: number }[] =
    [];
  for (const [i, peer] of peers.entries()) {
    const room = rooms[i % rooms.length]! + (i >= rooms.length ? ` ${Math.floor(i / rooms.length) + 1}` : '');
    const temperature = 19 + Math.random() * 4;
    const humidity = 40 + Math.random() * 15;
    for (const [name, unit, value, min, max, step] of [
      [`${room} temperature`, '°C', temperature, 15, 30, 0.4],
      [`${room} humidity`, '%', humidity, 25, 80, 1.5],
    ] as const) {
      const node = await call<Made>(first, 'POST', '/api/v1/nodes', {
        type: 'DataPoint',
        name,
        parent: project.id,
        owner: peer.id,
        meta: { unit },
        value: round(value),
      });
      points.push({ id: node.id, owner: peer, value, min, max, step });
    }
  }
  const temperatures = points.filter((_, i) => i % 2 === 0).map((p) => p.id);
  const average = await call<Made>(first, 'POST', '/api/v1/nodes', {
    type: 'DataPoint',
    name: 'Average temperature',
    parent: project.id,
    meta: { unit: '°C' },
  });
  await call(first, 'POST', '/api/v1/nodes', {
    type: 'Compute',
    name: 'Average of the rooms',
    parent: project.id,
    meta: { op: 'average', inputs: temperatures, target: average.id, placement: 'any' },
  });
  const fan = await call<Made>(first, 'POST', '/api/v1/nodes', {
    type: 'DataPoint',
    name: 'Fan',
    parent: project.id,
    meta: { kind: 'boolean' },
    value: false,
  });
  // A threshold on the first room switches the fan, with a SetValue under it.
  const switchFan = async (type: string, name: string, threshold: number, action: string, on: boolean) => {
    const trigger = await call<Made>(first, 'POST', '/api/v1/nodes', {
      type,
      name,
      parent: temperatures[0],
      meta: { threshold, hysteresis: 0.5 },
    });
    await call(first, 'POST', '/api/v1/nodes', {
      type: 'SetValue',
      name: action,
      parent: trigger.id,
      meta: { target: fan.id, value: on },
    });
  };
  await switchFan('HighThreshold', 'Too warm', 22.5, 'Fan on', true);
  await switchFan('LowThreshold', 'Cool again', 21, 'Fan off', false);

  // Values drift every second, each written to its owner.
  const timer = setInterval(() => {
    for (const p of points) {
      p.value = Math.min(p.max, Math.max(p.min, p.value + (Math.random() - 0.5) * 2 * p.step));
      call(p.owner, 'PUT', `/api/v1/nodes/${p.id}/value`, { value: round(p.value) }).catch(() => {
        // A peer stopped or unplugged: the demo goes on with the others.
      });
    }
  }, intervalMs);
  return { stop: () => clearInterval(timer), project: project.id };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
