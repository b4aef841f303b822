/**
 * Which end of a link pings (src/link/link.ts): exactly one of the two ends, agreed without a word
 * exchanged, and about half the links of every peer, so that no peer carries all the heartbeats.
 * And the RTT a link shows, smoothed over its heartbeats.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { pingsOn, smoothRtt } from '../../src/link/link.ts';

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

describe('smoothRtt', () => {
  test('the first sample is taken as it is; one late answer moves the RTT an eighth of the way', () => {
    assert.equal(smoothRtt(undefined, 0.34), 0.34);
    // A ping answered 40 ms late by a busy event loop, on a 0.3 ms loopback link.
    assert.equal(smoothRtt(0.3, 40.3), 5.3);
  });

  test('property: the RTT stays between the last value and the sample, and comes to a steady sample', () => {
    const ms = fc.double({ min: 0, max: 10_000, noNaN: true });
    fc.assert(
      fc.property(ms, ms, (last, sample) => {
        const next = smoothRtt(last, sample);
        assert.ok(next >= Math.min(last, sample) - 0.005 && next <= Math.max(last, sample) + 0.005);
      }),
    );
    fc.assert(
      fc.property(ms, ms, (start, steady) => {
        let rtt = start;
        for (let i = 0; i < 200; i++) rtt = smoothRtt(rtt, steady);
        assert.ok(Math.abs(rtt - steady) <= 0.05, `${rtt} after 200 samples of ${steady}`);
      }),
    );
  });
});
