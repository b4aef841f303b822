/**
 * The beacon wire format (src/discovery/beacon-codec.ts): a pinned test vector, round trips of
 * arbitrary fields, and that nothing altered, cut, padded or made up is ever believed or throws.
 */

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  BEACON_MAGIC,
  BEACON_VERSION,
  type Beacon,
  type BeaconKeys,
  decodeBeacon,
  encodeBeacon,
  MAX_BEACON_BYTES,
} from '../../src/discovery/beacon-codec.ts';

const KEYS: BeaconKeys = { tag: Buffer.from('0011223344556677', 'hex'), beaconKey: Buffer.alloc(32, 0x42) };
const OTHER_CLUSTER: BeaconKeys = {
  tag: Buffer.from('8899aabbccddeeff', 'hex'),
  beaconKey: Buffer.alloc(32, 0x43),
};
const SAME_TAG_OTHER_KEY: BeaconKeys = { tag: KEYS.tag, beaconKey: Buffer.alloc(32, 0x44) };

const FIXED: Beacon = {
  kind: 'hello',
  senderId: '01234567-89ab-4cde-8f01-23456789abcd',
  generation: 7,
  timestampMs: 1_700_000_000_000,
  nonce: Buffer.from('0102030405060708', 'hex'),
  port: 7420,
  host: '192.168.1.20',
  name: 'kitchen-pi',
  version: '0.1.0',
};

/**
 * FIXED encoded with KEYS. Computed once and pinned; the MAC was checked independently with
 * `openssl dgst -sha256 -mac HMAC -macopt hexkey:4242…42` over the first 84 bytes.
 */
const FIXED_HEX = [
  '53484f4c', // magic "SHOL"
  '01', // version
  '01', // kind hello
  '0000', // flags
  '0011223344556677', // cluster tag
  '0123456789ab4cde8f0123456789abcd', // sender id
  '00000007', // generation
  '0000018bcfe56800', // timestamp 1700000000000
  '0102030405060708', // nonce
  '1cfc', // port 7420
  '0c3139322e3136382e312e3230', // host "192.168.1.20"
  '0a6b69746368656e2d7069', // name "kitchen-pi"
  '05302e312e30', // version "0.1.0"
  '12e6d5f188aac32b12e2ba21c6e1a9fb', // MAC
].join('');

/** Size of the fixed part plus three empty strings plus the MAC: the smallest valid beacon. */
const MIN_BYTES = 54 + 3 + 16;

/** `body` followed by its MAC under `key`, as a sender with that key would make it. */
function withMac(body: Buffer, key: Buffer = KEYS.beaconKey): Buffer {
  return Buffer.concat([body, createHmac('sha256', key).update(body).digest().subarray(0, 16)]);
}

/** The body (everything before the MAC) of a datagram. */
const bodyOf = (datagram: Buffer): Buffer => Buffer.from(datagram.subarray(0, datagram.length - 16));

/** What the codec promises to keep of a string: the longest whole-character prefix of `max` bytes. */
function cut(value: string, max: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of value) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > max) break;
    out += ch;
    bytes += n;
  }
  return out;
}

const text = (maxLength: number) =>
  fc.oneof(
    fc.string({ unit: 'binary', maxLength }),
    fc.string({ unit: 'grapheme', maxLength }),
    fc.string({ unit: 'grapheme-ascii', maxLength }),
  );

const beaconArb: fc.Arbitrary<Beacon> = fc.record({
  kind: fc.constantFrom('hello', 'reply', 'bye'),
  senderId: fc.uuid(),
  generation: fc.integer({ min: 0, max: 0xffffffff }),
  timestampMs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  nonce: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => Buffer.from(b)),
  port: fc.integer({ min: 1, max: 65535 }),
  host: text(300),
  name: text(100),
  version: text(50),
});

function decoded(datagram: Buffer, keys: BeaconKeys = KEYS): Beacon {
  const result = decodeBeacon(datagram, keys);
  if (!result.ok) assert.fail(`expected a beacon, got rejection "${result.reason}"`);
  return result.beacon;
}

function reason(datagram: Buffer, keys: BeaconKeys = KEYS): string {
  const result = decodeBeacon(datagram, keys);
  return result.ok ? 'accepted' : result.reason;
}

function flipBit(datagram: Buffer, bit: number): Buffer {
  const copy = Buffer.from(datagram);
  copy[bit >> 3]! ^= 1 << (bit & 7);
  return copy;
}

describe('beacon codec', () => {
  test('the fixed beacon encodes to the pinned bytes, and they decode back to it', () => {
    const datagram = encodeBeacon(FIXED, KEYS);
    assert.equal(datagram.toString('hex'), FIXED_HEX);
    assert.equal(datagram.length, 100);
    assert.deepEqual(decoded(Buffer.from(FIXED_HEX, 'hex')), FIXED);
    assert.ok(datagram.subarray(0, 4).equals(BEACON_MAGIC));
    assert.equal(datagram[4], BEACON_VERSION);
  });

  test('kinds are pinned on the wire: hello 1, reply 2, bye 3', () => {
    for (const [kind, code] of [
      ['hello', 1],
      ['reply', 2],
      ['bye', 3],
    ] as const) {
      const datagram = encodeBeacon({ ...FIXED, kind }, KEYS);
      assert.equal(datagram[5], code);
      assert.equal(decoded(datagram).kind, kind);
    }
  });

  test('property: any beacon round-trips, strings cut to 255/64/32 bytes on a character boundary', () => {
    fc.assert(
      fc.property(beaconArb, (beacon) => {
        const datagram = encodeBeacon(beacon, KEYS);
        assert.ok(datagram.length <= MAX_BEACON_BYTES);
        assert.deepEqual(decoded(datagram), {
          ...beacon,
          host: cut(beacon.host, 255),
          name: cut(beacon.name, 64),
          version: cut(beacon.version, 32),
        });
      }),
      { numRuns: 300 },
    );
  });

  test('a name of multi-byte characters is cut before the character that would cross 64 bytes', () => {
    const name = '🐟'.repeat(20); // 80 bytes of 4-byte characters
    assert.equal(decoded(encodeBeacon({ ...FIXED, name }, KEYS)).name, '🐟'.repeat(16));
    const mixed = `${'a'.repeat(63)}é`; // the 2-byte é would end at byte 65
    assert.equal(decoded(encodeBeacon({ ...FIXED, name: mixed }, KEYS)).name, 'a'.repeat(63));
  });

  test('the smallest beacon (all strings empty) is accepted', () => {
    const datagram = encodeBeacon({ ...FIXED, host: '', name: '', version: '' }, KEYS);
    assert.equal(datagram.length, MIN_BYTES);
    assert.equal(decoded(datagram).host, '');
  });

  test('every single-bit flip of the fixed beacon is refused, for the reason of the field it hits', () => {
    const datagram = Buffer.from(FIXED_HEX, 'hex');
    for (let bit = 0; bit < datagram.length * 8; bit++) {
      const byte = bit >> 3;
      const expected =
        byte < 4 ? 'magic' : byte === 4 ? 'version' : byte >= 8 && byte < 16 ? 'cluster' : 'mac';
      assert.equal(reason(flipBit(datagram, bit)), expected, `bit ${bit} (byte ${byte})`);
    }
  });

  test('property: a single-bit flip anywhere in any beacon is refused', () => {
    fc.assert(
      fc.property(beaconArb, fc.nat(), (beacon, n) => {
        const datagram = encodeBeacon(beacon, KEYS);
        assert.notEqual(reason(flipBit(datagram, n % (datagram.length * 8))), 'accepted');
      }),
      { numRuns: 500 },
    );
  });

  test('every truncation is refused: "size" below the minimum, "mac" above it', () => {
    const datagram = Buffer.from(FIXED_HEX, 'hex');
    for (let length = 0; length < datagram.length; length++) {
      assert.equal(
        reason(datagram.subarray(0, length)),
        length < MIN_BYTES ? 'size' : 'mac',
        `cut to ${length} bytes`,
      );
    }
  });

  test('bytes appended after the MAC are refused ("mac"); beyond 1 KiB, "size"', () => {
    const datagram = Buffer.from(FIXED_HEX, 'hex');
    assert.equal(reason(Buffer.concat([datagram, Buffer.from([0])])), 'mac');
    assert.equal(reason(Buffer.concat([datagram, Buffer.alloc(MAX_BEACON_BYTES)])), 'size');
  });

  test('extensions (bytes before the MAC, covered by it) from a later sender are ignored, up to 1 KiB', () => {
    const body = bodyOf(Buffer.from(FIXED_HEX, 'hex'));
    const extended = withMac(Buffer.concat([body, Buffer.from('future fields')]));
    assert.deepEqual(decoded(extended), FIXED);
    const largest = withMac(Buffer.concat([body, Buffer.alloc(MAX_BEACON_BYTES - body.length - 16, 7)]));
    assert.equal(largest.length, MAX_BEACON_BYTES);
    assert.deepEqual(decoded(largest), FIXED);
    const tooLarge = withMac(Buffer.concat([body, Buffer.alloc(MAX_BEACON_BYTES - body.length - 15, 7)]));
    assert.equal(reason(tooLarge), 'size');
  });

  test('another cluster\'s beacon is refused on its tag ("cluster"), before any MAC', () => {
    const theirs = encodeBeacon(FIXED, OTHER_CLUSTER);
    assert.equal(reason(theirs), 'cluster');
    assert.equal(reason(encodeBeacon(FIXED, KEYS), OTHER_CLUSTER), 'cluster');
    assert.deepEqual(decoded(theirs, OTHER_CLUSTER), FIXED);
  });

  test('the right tag with the wrong key is refused ("mac")', () => {
    assert.equal(reason(encodeBeacon(FIXED, SAME_TAG_OTHER_KEY)), 'mac');
    assert.equal(reason(encodeBeacon(FIXED, KEYS), SAME_TAG_OTHER_KEY), 'mac');
  });

  test('bad magic ("magic") and another version ("version") are refused even with a valid MAC', () => {
    const body = bodyOf(encodeBeacon(FIXED, KEYS));
    const magic = Buffer.from(body);
    magic.write('SHOX', 0, 'ascii');
    assert.equal(reason(withMac(magic)), 'magic');
    for (const version of [0, 2, 255]) {
      const other = Buffer.from(body);
      other[4] = version;
      assert.equal(reason(withMac(other)), 'version', `version ${version}`);
    }
  });

  test('authentic but malformed content is refused as "malformed"', () => {
    const body = bodyOf(encodeBeacon(FIXED, KEYS));
    const mutate = (f: (b: Buffer) => Buffer | undefined): string => {
      const copy = Buffer.from(body);
      return reason(withMac(f(copy) ?? copy));
    };
    assert.equal(
      mutate((b) => {
        b[5] = 0;
      }),
      'malformed',
      'kind 0',
    );
    assert.equal(
      mutate((b) => {
        b[5] = 4;
      }),
      'malformed',
      'a kind this version does not know',
    );
    assert.equal(
      mutate((b) => {
        b.writeUInt16BE(0, 52);
      }),
      'malformed',
      'port 0',
    );
    assert.equal(
      mutate((b) => {
        b[54] = 200;
      }),
      'malformed',
      'host length past the end',
    );
    assert.equal(
      mutate((b) => b.subarray(0, body.length - 6)),
      'malformed',
      'version string missing',
    );
    const nameAt = 54 + 1 + 12;
    assert.equal(
      mutate((b) => {
        b[nameAt + 1] = 0xff;
      }),
      'malformed',
      'invalid UTF-8 in the name',
    );
    assert.equal(
      mutate((b) => {
        b[nameAt + 1] = 0xc3; // a lead byte whose continuation is cut off by the next byte
      }),
      'malformed',
      'truncated UTF-8 sequence in the name',
    );
  });

  test('flags (reserved) are ignored when set by an authentic sender', () => {
    const body = bodyOf(encodeBeacon(FIXED, KEYS));
    body.writeUInt16BE(0xffff, 6);
    assert.deepEqual(decoded(withMac(body)), FIXED);
  });

  test('property: decoding arbitrary bytes never throws and never accepts', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1100 }), (bytes) => {
        const result = decodeBeacon(Buffer.from(bytes), KEYS);
        assert.equal(result.ok, false);
      }),
      { numRuns: 1000 },
    );
  });

  test('property: arbitrary authentic content (valid header and MAC) never throws', () => {
    const authentic = fc
      .record({
        kind: fc.oneof(fc.constantFrom(1, 2, 3), fc.integer({ min: 0, max: 255 })),
        rest: fc.uint8Array({ minLength: 38, maxLength: 38 }),
        tail: fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          // Length-prefixed parts, mostly valid UTF-8, sometimes too few or too many.
          fc
            .array(
              fc.oneof(
                fc.string({ unit: 'binary', maxLength: 20 }).map((s) => Buffer.from(s, 'utf8')),
                fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
              ),
              { maxLength: 5 },
            )
            .map((parts) => Buffer.concat(parts.map((p) => Buffer.concat([Buffer.from([p.length]), p])))),
        ),
      })
      .map(({ kind, rest, tail }) => {
        const head = Buffer.concat([BEACON_MAGIC, Buffer.from([BEACON_VERSION, kind, 0, 0]), KEYS.tag, rest]);
        return withMac(Buffer.concat([head, tail]));
      });
    let accepted = 0;
    fc.assert(
      fc.property(authentic, (datagram) => {
        const result = decodeBeacon(datagram, KEYS);
        if (result.ok) {
          accepted++;
          assert.ok(result.beacon.port > 0);
          assert.ok(['hello', 'reply', 'bye'].includes(result.beacon.kind));
        } else {
          assert.ok(['size', 'malformed'].includes(result.reason), result.reason);
        }
      }),
      { numRuns: 1000 },
    );
    assert.ok(accepted > 0, 'the generator reaches the accepting path too');
  });
});
