/**
 * The link handshake (src/link/handshake.ts): both sides of a full exchange derive the same
 * per-direction session keys; a wrong key, another cluster, a peer talking to itself, a replayed
 * or reflected message, and any altered byte are refused with a reason, never an exception.
 */

import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { deriveClusterKeys, FrameOpener, FrameSealer } from '../../src/crypto.ts';
import {
  dialerFinish,
  dialerHello,
  type HandshakeParty,
  LINK_MAGIC,
  LINK_VERSION,
  type LinkKeys,
  listenerFinish,
  listenerRespond,
  type SessionKeys,
} from '../../src/link/handshake.ts';

const KEYS: LinkKeys = { tag: Buffer.from('0011223344556677', 'hex'), linkKey: Buffer.alloc(32, 0x51) };
const WRONG_KEY: LinkKeys = { tag: KEYS.tag, linkKey: Buffer.alloc(32, 0x52) };
const OTHER_CLUSTER: LinkKeys = {
  tag: Buffer.from('8899aabbccddeeff', 'hex'),
  linkKey: Buffer.alloc(32, 0x53),
};

const DIALER: HandshakeParty = { id: '11111111-1111-4111-8111-111111111111', generation: 3 };
const LISTENER: HandshakeParty = { id: '22222222-2222-4222-8222-222222222222', generation: 9 };

type Outcome =
  | {
      ok: true;
      dialer: SessionKeys;
      listener: SessionKeys;
      dialerSaw: HandshakeParty;
      listenerSaw: HandshakeParty;
    }
  | { ok: false; step: 'respond' | 'dialerFinish' | 'listenerFinish'; reason: string };

/**
 * Runs a whole handshake; `tamper(index, message)` may replace message 0 (HELLO), 1 (CHALLENGE)
 * or 2 (PROOF) on the wire.
 */
function handshake(
  options: {
    dialerKeys?: LinkKeys;
    listenerKeys?: LinkKeys;
    dialer?: HandshakeParty;
    listener?: HandshakeParty;
    tamper?: (index: number, message: Buffer) => Buffer;
  } = {},
): Outcome {
  const dk = options.dialerKeys ?? KEYS;
  const lk = options.listenerKeys ?? KEYS;
  const wire = options.tamper ?? ((_: number, m: Buffer) => m);
  const hello = dialerHello(dk, options.dialer ?? DIALER);
  const respond = listenerRespond(lk, options.listener ?? LISTENER, wire(0, hello.message));
  if (!respond.ok) return { ok: false, step: 'respond', reason: respond.reason };
  const finish = dialerFinish(dk, hello.state, wire(1, respond.message));
  if (!finish.ok) return { ok: false, step: 'dialerFinish', reason: finish.reason };
  const done = listenerFinish(lk, respond.state, wire(2, finish.message));
  if (!done.ok) return { ok: false, step: 'listenerFinish', reason: done.reason };
  return {
    ok: true,
    dialer: finish.session,
    listener: done.session,
    dialerSaw: finish.remote,
    listenerSaw: done.remote,
  };
}

function completed(outcome: Outcome): Extract<Outcome, { ok: true }> {
  if (!outcome.ok) assert.fail(`handshake failed at ${outcome.step}: ${outcome.reason}`);
  return outcome;
}

const partyArb = fc
  .record({ id: fc.uuid(), generation: fc.integer({ min: 0, max: 0xffffffff }) })
  .map((p): HandshakeParty => ({ ...p }));
const keysArb = fc.record({
  tag: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => Buffer.from(b)),
  linkKey: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b)),
});

describe('link handshake', () => {
  test('both sides derive matching per-direction session keys and learn who the other is', () => {
    const r = completed(handshake());
    assert.ok(r.dialer.send.equals(r.listener.receive), 'dialer→listener key');
    assert.ok(r.dialer.receive.equals(r.listener.send), 'listener→dialer key');
    assert.ok(!r.dialer.send.equals(r.dialer.receive), 'the two directions have different keys');
    assert.equal(r.dialer.send.length, 32);
    assert.deepEqual(r.dialerSaw, LISTENER);
    assert.deepEqual(r.listenerSaw, DIALER);
  });

  test('with keys derived from a real cluster secret, frames sealed by one side open on the other', () => {
    const keys = deriveClusterKeys('a strong enough test secret, not a PIN');
    const r = completed(handshake({ dialerKeys: keys, listenerKeys: keys }));
    const toListener = new FrameSealer(r.dialer.send);
    const atListener = new FrameOpener(r.listener.receive);
    const toDialer = new FrameSealer(r.listener.send);
    const atDialer = new FrameOpener(r.dialer.receive);
    assert.equal(atListener.open(toListener.seal(Buffer.from('ping')))?.toString(), 'ping');
    assert.equal(atDialer.open(toDialer.seal(Buffer.from('pong')))?.toString(), 'pong');
  });

  test('property: any two parties and keys complete, with fresh keys every time', () => {
    fc.assert(
      fc.property(partyArb, partyArb, keysArb, (dialer, listener, keys) => {
        fc.pre(dialer.id !== listener.id);
        const a = completed(handshake({ dialer, listener, dialerKeys: keys, listenerKeys: keys }));
        const b = completed(handshake({ dialer, listener, dialerKeys: keys, listenerKeys: keys }));
        assert.ok(a.dialer.send.equals(a.listener.receive) && a.dialer.receive.equals(a.listener.send));
        assert.ok(!a.dialer.send.equals(b.dialer.send), 'new nonces, new session keys');
        assert.deepEqual(a.listenerSaw, dialer);
        assert.deepEqual(a.dialerSaw, listener);
      }),
      { numRuns: 100 },
    );
  });

  test('a listener with another link key is refused by the dialer ("auth")', () => {
    assert.deepEqual(handshake({ listenerKeys: WRONG_KEY }), {
      ok: false,
      step: 'dialerFinish',
      reason: 'auth',
    });
  });

  test('a dialer that does not know the key cannot complete: a made-up proof is refused ("auth")', () => {
    const r = handshake({
      tamper: (i, m) => (i === 2 ? Buffer.concat([m.subarray(0, 6), randomBytes(32)]) : m),
    });
    assert.deepEqual(r, { ok: false, step: 'listenerFinish', reason: 'auth' });
  });

  test('another cluster\'s hello is refused on its tag ("cluster")', () => {
    assert.deepEqual(handshake({ dialerKeys: OTHER_CLUSTER }), {
      ok: false,
      step: 'respond',
      reason: 'cluster',
    });
  });

  test('a peer that dials itself is refused on both sides ("self")', () => {
    assert.deepEqual(handshake({ listener: { ...DIALER, generation: 1 } }), {
      ok: false,
      step: 'respond',
      reason: 'self',
    });
    // A challenge that claims the dialer's own id (a reflected or looped connection).
    const hello = dialerHello(KEYS, DIALER);
    const challenge = listenerRespond(KEYS, { ...DIALER, id: randomUUID() }, hello.message);
    assert.ok(challenge.ok);
    const reflected = Buffer.from(challenge.message);
    Buffer.from(DIALER.id.replaceAll('-', ''), 'hex').copy(reflected, 6);
    assert.deepEqual(dialerFinish(KEYS, hello.state, reflected), { ok: false, reason: 'self' });
  });

  test('a recorded challenge or proof is useless in a later handshake ("auth")', () => {
    const firstHello = dialerHello(KEYS, DIALER);
    const first = listenerRespond(KEYS, LISTENER, firstHello.message);
    assert.ok(first.ok);
    const firstFinish = dialerFinish(KEYS, firstHello.state, first.message);
    assert.ok(firstFinish.ok);

    const laterHello = dialerHello(KEYS, DIALER);
    assert.deepEqual(dialerFinish(KEYS, laterHello.state, first.message), { ok: false, reason: 'auth' });

    const later = listenerRespond(KEYS, LISTENER, laterHello.message);
    assert.ok(later.ok);
    assert.deepEqual(listenerFinish(KEYS, later.state, firstFinish.message), { ok: false, reason: 'auth' });
  });

  test("the listener's proof reflected back as the dialer's is refused (role labels)", () => {
    const hello = dialerHello(KEYS, DIALER);
    const respond = listenerRespond(KEYS, LISTENER, hello.message);
    assert.ok(respond.ok);
    const proofL = respond.message.subarray(respond.message.length - 32);
    const reflected = Buffer.concat([LINK_MAGIC, Buffer.from([LINK_VERSION, 3]), proofL]);
    assert.deepEqual(listenerFinish(KEYS, respond.state, reflected), { ok: false, reason: 'auth' });
  });

  test('wrong type, wrong length, another version and short input are refused with their reason', () => {
    const hello = dialerHello(KEYS, DIALER);
    const respond = listenerRespond(KEYS, LISTENER, hello.message);
    assert.ok(respond.ok);
    const v2 = Buffer.from(hello.message);
    v2[4] = 2;
    assert.deepEqual(listenerRespond(KEYS, LISTENER, v2), { ok: false, reason: 'version' });
    assert.deepEqual(listenerRespond(KEYS, LISTENER, respond.message), { ok: false, reason: 'malformed' });
    assert.deepEqual(dialerFinish(KEYS, hello.state, hello.message), { ok: false, reason: 'malformed' });
    assert.deepEqual(listenerRespond(KEYS, LISTENER, hello.message.subarray(0, 40)), {
      ok: false,
      reason: 'malformed',
    });
    assert.deepEqual(listenerRespond(KEYS, LISTENER, Buffer.concat([hello.message, Buffer.from([0])])), {
      ok: false,
      reason: 'malformed',
    });
    for (const short of [Buffer.alloc(0), Buffer.from('SHL'), Buffer.from('SHLK\x01')]) {
      assert.deepEqual(listenerRespond(KEYS, LISTENER, short), { ok: false, reason: 'malformed' });
      assert.deepEqual(dialerFinish(KEYS, hello.state, short), { ok: false, reason: 'malformed' });
      assert.deepEqual(listenerFinish(KEYS, respond.state, short), { ok: false, reason: 'malformed' });
    }
  });

  test('every single altered byte of each message, exhaustively for one exchange, stops it', () => {
    const lengths = [6 + 8 + 16 + 4 + 32, 6 + 16 + 4 + 32 + 32, 6 + 32];
    for (const [index, length] of lengths.entries()) {
      for (let position = 0; position < length; position++) {
        const r = handshake({
          tamper: (i, m) => {
            if (i !== index) return m;
            const copy = Buffer.from(m);
            copy[position]! ^= 0x01;
            return copy;
          },
        });
        assert.equal(r.ok, false, `message ${index} byte ${position}`);
      }
    }
  });

  test('property: any alteration of any message (flip, cut, extend) is refused, never thrown', () => {
    const alteration = fc.oneof(
      fc.record({ kind: fc.constant('xor' as const), at: fc.nat(), value: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), value: fc.constant(0) }),
      fc.record({
        kind: fc.constant('extend' as const),
        at: fc.nat(),
        value: fc.integer({ min: 0, max: 255 }),
      }),
    );
    fc.assert(
      fc.property(
        partyArb,
        partyArb,
        keysArb,
        fc.integer({ min: 0, max: 2 }),
        alteration,
        (d, l, keys, index, alt) => {
          fc.pre(d.id !== l.id);
          const r = handshake({
            dialer: d,
            listener: l,
            dialerKeys: keys,
            listenerKeys: keys,
            tamper: (i, m) => {
              if (i !== index) return m;
              if (alt.kind === 'cut') return m.subarray(0, alt.at % m.length);
              if (alt.kind === 'extend') return Buffer.concat([m, Buffer.from([alt.value])]);
              const copy = Buffer.from(m);
              copy[alt.at % m.length]! ^= alt.value;
              return copy;
            },
          });
          assert.equal(r.ok, false);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('property: arbitrary bytes at any step are refused or answered, never thrown', () => {
    const hello = dialerHello(KEYS, DIALER);
    const respond = listenerRespond(KEYS, LISTENER, hello.message);
    assert.ok(respond.ok);
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      // Right magic and version, any type and body.
      fc
        .tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 120 }))
        .map(([type, body]) => Buffer.concat([LINK_MAGIC, Buffer.from([LINK_VERSION, type]), body])),
    );
    fc.assert(
      fc.property(bytes, (message) => {
        listenerRespond(KEYS, LISTENER, message);
        assert.equal(dialerFinish(KEYS, hello.state, message).ok, false);
        assert.equal(listenerFinish(KEYS, respond.state, message).ok, false);
      }),
      { numRuns: 1000 },
    );
  });
});
