/**
 * Which end of a link pings (src/link/link.ts): exactly one of the two ends, agreed without a word
 * exchanged, and about half the links of every peer, so that no peer carries all the heartbeats.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { pingsOn } from '../../src/link/link.ts';

describe('pingsOn', () => {
  test('exactly one end of every link pings', () => {
    fc.assert(
      fc.property(fc.uuid(), fc.uuid(), (a, b) => {
        fc.pre(a !== b);
        assert.notEqual(pingsOn(a, b), pingsOn(b, a));
      }),
    );
  });

  test('the lowest id of a mesh of 25 pings about half its links, not all of them', () => {
    for (let run = 0; run < 20; run++) {
      // Fixed seeds: the same 20 meshes every run (a binomial tail would make a flaky test).
      const ids = fc.sample(fc.uuid({ version: 4 }), { numRuns: 25, seed: run }).sort();
      const lowest = ids[0]!;
      const pinged = ids.slice(1).filter((other) => pingsOn(lowest, other)).length;
      assert.ok(pinged >= 3 && pinged <= 21, `lowest id pings ${pinged} of 24 links`);
    }
  });
});
