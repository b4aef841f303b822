/**
 * Link messages (src/link/messages.ts): parsing never throws; a type this version does not know is
 * "unknown_type" (counted and dropped, so newer peers can talk to older ones), a known type of the
 * wrong shape is "invalid", and fields this version does not know are accepted.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encodeHlc } from '../../src/clock.ts';
import {
  encodeMessage,
  type LinkMessage,
  MAX_MESSAGE_DEPTH,
  type PeerRecord,
  parseMessage,
} from '../../src/link/messages.ts';

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value), 'utf8');

function reasonOf(bytes: Buffer): string {
  const result = parseMessage(bytes);
  return result.ok ? 'ok' : result.reason;
}

const RECORD: PeerRecord = {
  id: '01234567-89ab-4cde-8f01-23456789abcd',
  generation: 4,
  seq: 12,
  name: 'kitchen-pi',
  addresses: ['192.168.1.20'],
  port: 7420,
  model: 'Raspberry Pi 4 Model B Rev 1.4',
  version: '0.1.0',
  os: 'Linux 6.1.0 (arm64)',
  platform: 'LINUX',
  settings: { beaconPort: 7421 },
  links: ['11111111-1111-4111-8111-111111111111'],
};

/** A number that survives JSON unchanged (no NaN, no infinities, no -0). */
const jsonNumber = fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (x === 0 ? 0 : x));

const recordArb: fc.Arbitrary<PeerRecord> = fc
  .record(
    {
      id: fc.uuid(),
      generation: fc.integer({ min: 0, max: 0xffffffff }),
      seq: fc.nat(),
      name: fc.string({ unit: 'grapheme-composite', maxLength: 40 }),
      addresses: fc.array(fc.ipV4(), { maxLength: 5 }),
      port: fc.integer({ min: 1, max: 65535 }),
      model: fc.string({ maxLength: 30 }),
      version: fc.string({ maxLength: 20 }),
      os: fc.string({ maxLength: 30 }),
      platform: fc.constantFrom('LINUX', 'MAC', 'WINDOWS', 'FREEBSD'),
      settings: fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 })),
      links: fc.array(fc.uuid(), { maxLength: 5 }),
      left: fc.boolean(),
    },
    {
      requiredKeys: [
        'id',
        'generation',
        'seq',
        'name',
        'addresses',
        'port',
        'model',
        'version',
        'os',
        'platform',
        'settings',
        'links',
      ],
    },
  )
  // Through JSON once, so -0 and other values JSON cannot keep are in their JSON form already.
  .map((r) => JSON.parse(JSON.stringify(r)) as PeerRecord);

const hlcArb = fc
  .tuple(fc.integer({ min: 0, max: 2 ** 48 }), fc.integer({ min: 0, max: 999_999 }))
  .map(([wall, logical]) => encodeHlc(wall, logical));

/** A version vector, with the stamps that tell two numberings of one owner apart. */
const vvArb: fc.Arbitrary<LinkMessage> = fc
  .record(
    {
      vv: fc.dictionary(fc.uuid(), fc.nat(), { maxKeys: 6 }),
      mine: hlcArb,
      yours: fc.record({ seq: fc.integer({ min: 1, max: 2 ** 40 }), hlc: hlcArb }),
    },
    { requiredKeys: ['vv'] },
  )
  .map((v): LinkMessage => JSON.parse(JSON.stringify({ t: 'vv', ...v })) as LinkMessage);

/** An ask for readings, and a page of them (the values as JSON round-trips them). */
const readingsArb: fc.Arbitrary<LinkMessage> = fc
  .record({
    ref: fc.nat(),
    owner: fc.uuid(),
    node: fc.uuid(),
    from: fc.nat(),
    skip: fc.nat(),
    to: fc.nat(),
    seq: fc.nat(),
    points: fc.array(fc.tuple(fc.nat(), fc.option(fc.nat()), fc.jsonValue({ maxDepth: 3 })), {
      maxLength: 5,
    }),
    more: fc.boolean(),
    later: fc.boolean(),
  })
  .chain(({ ref, points, more, later, ...ask }) =>
    fc.constantFrom<LinkMessage>(
      { t: 'rdq', ref, ...ask },
      JSON.parse(JSON.stringify({ t: 'rd', ref, points, more, ...(later ? { later } : {}) })) as LinkMessage,
    ),
  );

const messageArb: fc.Arbitrary<LinkMessage> = fc.oneof(
  vvArb,
  readingsArb,
  jsonNumber.map((ts): LinkMessage => ({ t: 'ping', ts })),
  jsonNumber.map((ts): LinkMessage => ({ t: 'pong', ts })),
  fc.array(recordArb, { maxLength: 4 }).map((records): LinkMessage => ({ t: 'records', records })),
  recordArb.map((record): LinkMessage => ({ t: 'bye', record })),
);

describe('link messages', () => {
  test('property: every message round-trips through encodeMessage and parseMessage', () => {
    fc.assert(
      fc.property(messageArb, (message) => {
        assert.deepEqual(parseMessage(encodeMessage(message)), { ok: true, message });
      }),
      { numRuns: 300 },
    );
  });

  test('property: arbitrary bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const result = parseMessage(Buffer.from(bytes));
        assert.equal(typeof result.ok, 'boolean');
      }),
      { numRuns: 1000 },
    );
  });

  test('property: arbitrary JSON never throws; anything but an object with a string "t" is malformed', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const result = parseMessage(json(value));
        const hasType =
          typeof value === 'object' && value !== null && !Array.isArray(value) && typeof value.t === 'string';
        if (!hasType) assert.deepEqual(result, { ok: false, reason: 'malformed' });
      }),
      { numRuns: 1000 },
    );
  });

  test('property: objects with a known "t" and arbitrary other fields never throw', () => {
    const value = fc.record({
      t: fc.constantFrom('ping', 'pong', 'records', 'bye'),
      ts: fc.jsonValue(),
      record: fc.oneof(fc.jsonValue(), recordArb),
      records: fc.oneof(fc.jsonValue(), fc.array(fc.oneof(recordArb, fc.jsonValue()), { maxLength: 3 })),
    });
    fc.assert(
      fc.property(value, (v) => {
        const result = parseMessage(json(v));
        assert.ok(result.ok || result.reason === 'invalid', JSON.stringify(result));
      }),
      { numRuns: 500 },
    );
  });

  test('deep nesting is refused, not a stack overflow out of the parser', () => {
    const deep = Buffer.from(`${'['.repeat(200_000)}${']'.repeat(200_000)}`);
    assert.equal(typeof parseMessage(deep).ok, 'boolean');
    // Deeper than MAX_MESSAGE_DEPTH anywhere, unknown fields included: nothing of ours could
    // write it back out (JSON.stringify recurses).
    const nested = (depth: number) =>
      Buffer.from(`{"t":"ping","ts":1,"x":${'['.repeat(depth)}${']'.repeat(depth)}}`);
    assert.equal(reasonOf(nested(5000)), 'invalid');
    assert.equal(reasonOf(nested(MAX_MESSAGE_DEPTH)), 'invalid', 'the object around it is a level');
    assert.equal(reasonOf(nested(MAX_MESSAGE_DEPTH - 1)), 'ok');
  });

  test('not JSON, or JSON that is not an object with a string type, is "malformed"', () => {
    for (const bytes of [
      Buffer.from('not json'),
      Buffer.from([0xff, 0xfe, 0x00]),
      Buffer.alloc(0),
      json(null),
      json(42),
      json('ping'),
      json(['ping']),
      json({}),
      json({ t: 1 }),
      json({ t: null }),
      json({ type: 'ping', ts: 1 }),
      Buffer.from('{"__proto__": {"t": "ping"}, "ts": 1}'),
    ]) {
      assert.equal(reasonOf(bytes), 'malformed', bytes.toString());
    }
  });

  test('a type this version does not know is "unknown_type", including Object.prototype names', () => {
    for (const t of [
      'pings',
      'PING',
      '',
      'node',
      '__proto__',
      'constructor',
      'toString',
      'hasOwnProperty',
      'valueOf',
      'prototype',
    ]) {
      assert.equal(reasonOf(json({ t, ts: 1 })), 'unknown_type', `t = ${JSON.stringify(t)}`);
    }
  });

  test('a known type of the wrong shape is "invalid"', () => {
    const cases: [string, unknown][] = [
      ['ping without ts', { t: 'ping' }],
      ['ping with a string ts', { t: 'ping', ts: '1' }],
      ['pong with a null ts', { t: 'pong', ts: null }],
      ['records not an array', { t: 'records', records: {} }],
      ['a record with a bad id', { t: 'records', records: [{ ...RECORD, id: 'not-an-id' }] }],
      [
        'a record with an upper-case id',
        { t: 'records', records: [{ ...RECORD, id: RECORD.id.toUpperCase() }] },
      ],
      ['a record with port 0', { t: 'records', records: [{ ...RECORD, port: 0 }] }],
      ['a record with a fractional seq', { t: 'records', records: [{ ...RECORD, seq: 1.5 }] }],
      ['a record with a negative generation', { t: 'records', records: [{ ...RECORD, generation: -1 }] }],
      [
        'a record with a generation past 32 bits',
        { t: 'records', records: [{ ...RECORD, generation: 2 ** 32 }] },
      ],
      ['a record missing links', { t: 'bye', record: { ...RECORD, links: undefined } }],
      ['a record with left not a boolean', { t: 'bye', record: { ...RECORD, left: 'yes' } }],
      ['too many addresses', { t: 'bye', record: { ...RECORD, addresses: new Array(33).fill('10.0.0.1') } }],
      ['a name over 256 characters', { t: 'bye', record: { ...RECORD, name: 'x'.repeat(257) } }],
      ['bye without a record', { t: 'bye' }],
      ['a vector stamp that is no stamp', { t: 'vv', vv: {}, mine: 'yesterday' }],
      ['a vector stamp at seq 0', { t: 'vv', vv: {}, yours: { seq: 0, hlc: encodeHlc(1, 0) } }],
    ];
    for (const [what, value] of cases) assert.equal(reasonOf(json(value)), 'invalid', what);
  });

  test('fields this version does not know are accepted (forward compatibility)', () => {
    const ping = parseMessage(json({ t: 'ping', ts: 5, priority: 'high', trace: { id: 1 } }));
    assert.equal(ping.ok, true);
    const records = parseMessage(
      json({ t: 'records', records: [{ ...RECORD, zone: 'garage', capabilities: ['mqtt'] }], epoch: 2 }),
    );
    assert.equal(records.ok, true);
    const bye = parseMessage(json({ t: 'bye', record: { ...RECORD, left: true, reason: 'upgrade' } }));
    assert.equal(bye.ok, true);
  });
});
