/**
 * src/crypto.ts: sealed frames open only as the authentic next frame (no replay, reorder, drop or
 * alteration), weak secrets are named, and cluster keys are a deterministic function of the secret.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  deriveClusterKeys,
  FrameOpener,
  FrameSealer,
  generateSecret,
  safeEqual,
  secretWeakness,
} from '../../src/crypto.ts';

const KEY = Buffer.alloc(32, 0x61);

function sealAll(plaintexts: Buffer[], key = KEY): Buffer[] {
  const sealer = new FrameSealer(key);
  return plaintexts.map((p) => sealer.seal(p));
}

const frames = (n: number): Buffer[] =>
  sealAll(Array.from({ length: n }, (_, i) => Buffer.from(`frame ${i}`)));

describe('sealed frames', () => {
  test('property: a sequence of frames opens in order to what was sealed', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(fc.uint8Array({ maxLength: 2000 }), { maxLength: 30 }),
        (key, plaintexts) => {
          const sealer = new FrameSealer(Buffer.from(key));
          const opener = new FrameOpener(Buffer.from(key));
          for (const p of plaintexts) {
            const frame = sealer.seal(Buffer.from(p));
            assert.equal(frame.length, p.length + 16, 'the body plus a 16-byte tag');
            assert.deepEqual(opener.open(frame), Buffer.from(p));
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  test('the same plaintext seals differently each time (a counter nonce)', () => {
    const [a, b] = sealAll([Buffer.from('same'), Buffer.from('same')]);
    assert.ok(!a!.equals(b!));
  });

  test('a replayed frame fails to open, and the next one still opens', () => {
    const [f0, f1] = frames(2) as [Buffer, Buffer];
    const opener = new FrameOpener(KEY);
    assert.equal(opener.open(f0)?.toString(), 'frame 0');
    assert.equal(opener.open(f0), undefined);
    assert.equal(opener.open(f1)?.toString(), 'frame 1');
    assert.equal(opener.open(f1), undefined);
  });

  test('a frame out of order fails to open', () => {
    const [f0, f1] = frames(2) as [Buffer, Buffer];
    const opener = new FrameOpener(KEY);
    assert.equal(opener.open(f1), undefined);
    assert.equal(opener.open(f0)?.toString(), 'frame 0');
    assert.equal(opener.open(f1)?.toString(), 'frame 1');
  });

  test('after a dropped frame no later frame opens', () => {
    const [, f1, f2] = frames(3) as [Buffer, Buffer, Buffer];
    const opener = new FrameOpener(KEY);
    assert.equal(opener.open(f1), undefined);
    assert.equal(opener.open(f2), undefined);
  });

  test('property: any bit flip of a frame makes it fail to open; the original still opens', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (plaintext, n) => {
        const [frame] = sealAll([Buffer.from(plaintext)]) as [Buffer];
        const bit = n % (frame.length * 8);
        const flipped = Buffer.from(frame);
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        const opener = new FrameOpener(KEY);
        assert.equal(opener.open(flipped), undefined);
        assert.deepEqual(opener.open(frame), Buffer.from(plaintext));
      }),
      { numRuns: 300 },
    );
  });

  test('cut or extended frames, frames shorter than a tag, and another key fail to open', () => {
    const [frame] = frames(1) as [Buffer];
    const opener = new FrameOpener(KEY);
    assert.equal(opener.open(frame.subarray(0, frame.length - 1)), undefined);
    assert.equal(opener.open(Buffer.concat([frame, Buffer.from([0])])), undefined);
    assert.equal(opener.open(Buffer.alloc(0)), undefined);
    assert.equal(opener.open(Buffer.alloc(15)), undefined);
    assert.equal(opener.open(Buffer.alloc(16)), undefined);
    assert.equal(new FrameOpener(Buffer.alloc(32, 0x62)).open(frame), undefined);
    assert.equal(opener.open(frame)?.toString(), 'frame 0');
  });

  test('an empty plaintext is a 16-byte frame that opens to empty', () => {
    const [frame] = sealAll([Buffer.alloc(0)]) as [Buffer];
    assert.equal(frame.length, 16);
    assert.deepEqual(new FrameOpener(KEY).open(frame), Buffer.alloc(0));
  });

  test('property: opening arbitrary bytes never throws and never succeeds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        assert.equal(new FrameOpener(KEY).open(Buffer.from(bytes)), undefined);
      }),
      { numRuns: 500 },
    );
  });
});

describe('cluster secrets and keys', () => {
  test('secretWeakness names numeric PINs of any length', () => {
    for (const pin of ['0', '1234', '000000', '12345678901234567890']) {
      assert.match(secretWeakness(pin) ?? '', /numeric PIN/, pin);
    }
  });

  test('secretWeakness names secrets shorter than 16 characters, with their length', () => {
    assert.match(secretWeakness('') ?? '', /only 0 characters/);
    assert.match(secretWeakness('hunter2') ?? '', /only 7 characters/);
    assert.match(secretWeakness('abcdefghijklmno') ?? '', /only 15 characters/);
    assert.equal(secretWeakness('abcdefghijklmnop'), undefined);
  });

  test('a generated secret is 43 base64url characters, strong, and new each time', () => {
    const secret = generateSecret();
    assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(secretWeakness(secret), undefined);
    assert.notEqual(generateSecret(), secret);
  });

  test('deriveClusterKeys is deterministic per secret, different across secrets, and NFC-normalised', () => {
    const a = deriveClusterKeys('correct horse battery staple');
    const again = deriveClusterKeys('correct horse battery staple');
    const b = deriveClusterKeys('correct horse battery stapler');
    assert.deepEqual(a, again);
    assert.equal(a.tag.length, 8);
    assert.equal(a.beaconKey.length, 32);
    assert.equal(a.linkKey.length, 32);
    assert.ok(!a.beaconKey.equals(a.linkKey), 'a key per purpose');
    assert.ok(!a.tag.equals(b.tag));
    assert.ok(!a.beaconKey.equals(b.beaconKey));
    assert.ok(!a.linkKey.equals(b.linkKey));
    const composed = deriveClusterKeys('caf\u00e9 au lait, s\u2019il vous pla\u00eet');
    const decomposed = deriveClusterKeys('cafe\u0301 au lait, s\u2019il vous plai\u0302t');
    assert.deepEqual(composed, decomposed);
  });

  test('safeEqual compares contents, and is false (not a throw) for different lengths', () => {
    const x = randomBytes(16);
    assert.equal(safeEqual(x, Buffer.from(x)), true);
    assert.equal(safeEqual(x, randomBytes(16)), false);
    assert.equal(safeEqual(x, x.subarray(0, 15)), false);
    assert.equal(safeEqual(Buffer.alloc(0), Buffer.alloc(0)), true);
  });
});
