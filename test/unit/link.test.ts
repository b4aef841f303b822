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
  test('the first samples are averaged; after eight, one late answer moves the RTT an eighth of the way', () => {
    assert.equal(smoothRtt(undefined, 0.34, 1), 0.34);
    // A first ping answered late while the peer was busy linking, then the link as it is.
    let rtt = smoothRtt(undefined, 30.3, 1);
    for (let n = 2; n <= 8; n++) rtt = smoothRtt(rtt, 0.3, n);
    assert.equal(rtt, 4.05, 'the mean of the eight');
    // Then a ping answered 40 ms late by a busy event loop, on a 0.3 ms loopback link.
    assert.equal(smoothRtt(0.3, 40.3, 9), 5.3);
  });

  test('property: the RTT stays between the last value and the sample, and comes to a steady sample', () => {
    const ms = fc.double({ min: 0, max: 10_000, noNaN: true });
    const n = fc.integer({ min: 1, max: 1000 });
    fc.assert(
      fc.property(ms, ms, n, (last, sample, count) => {
        const next = smoothRtt(last, sample, count);
        assert.ok(next >= Math.min(last, sample) - 0.005 && next <= Math.max(last, sample) + 0.005);
      }),
    );
    fc.assert(
      fc.property(ms, ms, (start, steady) => {
        let rtt = smoothRtt(undefined, start, 1);
        for (let i = 2; i <= 200; i++) rtt = smoothRtt(rtt, steady, i);
        assert.ok(Math.abs(rtt - steady) <= 0.05, `${rtt} after 199 samples of ${steady}`);
      }),
    );
  });
});
