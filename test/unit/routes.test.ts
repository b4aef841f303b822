/**
 * computeRoutes (src/mesh/routes.ts) against a reference on random graphs: only edges both ends
 * list count, left peers carry no traffic, every reachable peer gets the first hop of a shortest
 * path (the lowest such neighbour), and unreachable ones are left out.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { computeRoutes, type LinkState } from '../../src/mesh/routes.ts';

const id = (n: number): string => `${n.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
const SELF = id(0);

function states(entries: [number, number[], boolean?][]): Map<string, LinkState> {
  return new Map(entries.map(([n, links, left]) => [id(n), { id: id(n), links: links.map(id), left }]));
}

interface Graph {
  selfId: string;
  direct: string[];
  records: Map<string, LinkState>;
}

const graphArb: fc.Arbitrary<Graph> = fc.integer({ min: 1, max: 12 }).chain((n) => {
  const ids = Array.from({ length: n }, (_, i) => id(i + 1));
  const everyone = [SELF, ...ids];
  const node = fc.record({
    hasRecord: fc.double({ min: 0, max: 1, noNaN: true }).map((x) => x < 0.9),
    links: fc.subarray(everyone),
    left: fc.double({ min: 0, max: 1, noNaN: true }).map((x) => x < 0.15),
  });
  return fc
    .record({
      nodes: fc.array(node, { minLength: n, maxLength: n }),
      direct: fc.array(fc.constantFrom(...ids), { maxLength: 4 }),
    })
    .map(({ nodes, direct }) => {
      const records = new Map<string, LinkState>();
      nodes.forEach((nd, i) => {
        if (nd.hasRecord) records.set(ids[i]!, { id: ids[i]!, links: nd.links, left: nd.left });
      });
      // A linked peer is never "left" in the table (linkUp clears it), so direct ids are not left.
      return { selfId: SELF, direct: direct.filter((d) => !records.get(d)?.left), records };
    });
});

/** Neighbours of `u` (not self) by edges that both ends list, neither left. */
function neighbours(g: Graph, u: string): string[] {
  const r = g.records.get(u);
  if (!r || r.left) return [];
  return r.links.filter((v) => {
    if (v === g.selfId || v === u) return false;
    const back = g.records.get(v);
    return back !== undefined && !back.left && back.links.includes(u);
  });
}

/** Hop counts from `start` over the graph without self. */
function distancesFrom(g: Graph, start: string): Map<string, number> {
  const dist = new Map([[start, 0]]);
  let frontier = [start];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const u of frontier) {
      for (const v of neighbours(g, u)) {
        if (!dist.has(v)) {
          dist.set(v, dist.get(u)! + 1);
          next.push(v);
        }
      }
    }
    frontier = next;
  }
  return dist;
}

/** The reference answer: distance from self, and the lowest first hop of a shortest path. */
function reference(g: Graph): Map<string, { distance: number; hop: string }> {
  const direct = [...new Set(g.direct)].sort();
  const fromEach = new Map(direct.map((d) => [d, distancesFrom(g, d)]));
  const best = new Map<string, { distance: number; hop: string }>();
  for (const d of direct) {
    for (const [x, k] of fromEach.get(d)!) {
      if (x === g.selfId) continue;
      const distance = direct.includes(x) ? 1 : k + 1;
      const hop = direct.includes(x) ? x : d;
      const current = best.get(x);
      if (!current || distance < current.distance || (distance === current.distance && hop < current.hop)) {
        best.set(x, { distance, hop });
      }
    }
  }
  return best;
}

describe('computeRoutes', () => {
  test('property: routes equal the reference (reachability, shortest first hop, lowest id on ties)', () => {
    fc.assert(
      fc.property(graphArb, (g) => {
        const routes = computeRoutes(g.selfId, g.direct, g.records);
        const expected = reference(g);
        assert.deepEqual(
          [...routes.keys()].sort(),
          [...expected.keys()].sort(),
          'exactly the reachable peers, never self',
        );
        for (const [x, { hop }] of expected) assert.equal(routes.get(x), hop, `first hop to ${x}`);
      }),
      { numRuns: 500 },
    );
  });

  test('property: every first hop is a direct neighbour; a direct neighbour routes to itself', () => {
    fc.assert(
      fc.property(graphArb, (g) => {
        const routes = computeRoutes(g.selfId, g.direct, g.records);
        for (const [x, hop] of routes) {
          assert.ok(g.direct.includes(hop), `${hop} is direct`);
          if (g.direct.includes(x)) assert.equal(hop, x);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('property: a left peer is never reached through a relay and never relays', () => {
    fc.assert(
      fc.property(graphArb, (g) => {
        const routes = computeRoutes(g.selfId, g.direct, g.records);
        for (const [x, r] of g.records) {
          if (r.left) assert.equal(routes.has(x), g.direct.includes(x), `left ${x}`);
        }
        // Marking a relayed peer as left removes it and everything only it led to.
        const relayed = [...routes.keys()].filter((x) => !g.direct.includes(x));
        for (const x of relayed) {
          const without = new Map(g.records);
          without.set(x, { ...g.records.get(x)!, left: true });
          const after = computeRoutes(g.selfId, g.direct, without);
          assert.equal(after.has(x), false);
          for (const y of after.keys()) assert.ok(routes.has(y), 'leaving never adds a route');
        }
      }),
      { numRuns: 100 },
    );
  });

  test('an edge counts only when both ends list it', () => {
    const one = computeRoutes(
      SELF,
      [id(1)],
      states([
        [1, [2]],
        [2, []],
      ]),
    );
    assert.deepEqual([...one], [[id(1), id(1)]]);
    const both = computeRoutes(
      SELF,
      [id(1)],
      states([
        [1, [2]],
        [2, [1]],
      ]),
    );
    assert.deepEqual(
      [...both],
      [
        [id(1), id(1)],
        [id(2), id(1)],
      ],
    );
  });

  test('a stale record of a dead peer adds no path once its neighbours dropped it', () => {
    // 3 died still listing 1 and 4; 1 and 4 have since flooded records without it.
    const routes = computeRoutes(
      SELF,
      [id(1)],
      states([
        [1, [0]],
        [3, [1, 4]],
        [4, []],
      ]),
    );
    assert.deepEqual([...routes.keys()], [id(1)]);
  });

  test('ties between equally short paths go to the lower first hop', () => {
    const records = states([
      [1, [0, 3]],
      [2, [0, 3]],
      [3, [1, 2]],
    ]);
    assert.equal(computeRoutes(SELF, [id(2), id(1)], records).get(id(3)), id(1));
  });

  test('records listing self, duplicates in the direct ids, and no links at all are handled', () => {
    assert.deepEqual([...computeRoutes(SELF, [], new Map())], []);
    const routes = computeRoutes(SELF, [id(1), id(1)], states([[1, [0, 0, 1]]]));
    assert.deepEqual([...routes], [[id(1), id(1)]]);
  });
});
