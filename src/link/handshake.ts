/**
 * The link handshake: mutual challenge-response over the cluster's link key, then per-session keys.
 *
 *   dialer -> listener   HELLO     magic "SHLK", version, type 1, cluster tag (8), dialer id (16),
 *                                  dialer generation (4), dialer nonce nD (32)
 *   listener -> dialer   CHALLENGE magic, version, type 2, listener id (16), listener generation (4),
 *                                  listener nonce nL (32), proofL (32)
 *   dialer -> listener   PROOF     magic, version, type 3, proofD (32)
 *
 *   transcript = "shoal/v1 link" | idD | idL | genD | genL | nD | nL
 *   proofL = HMAC(linkKey, "listener" | transcript)     proofD = HMAC(linkKey, "dialer" | transcript)
 *   key d->l = HKDF(linkKey, salt nD|nL, "shoal/v1 d->l")  key l->d = HKDF(..., "shoal/v1 l->d")
 *
 * Each side proves knowledge of the key over a nonce the other just chose, so nothing recorded can
 * be replayed, and the role labels stop a proof being reflected back. Nothing reusable is sent:
 * an attacker who lures a peer into dialling it learns one HMAC over fresh nonces, no more than a
 * beacon already shows. All functions are pure and never throw on bad input.
 */

import { randomBytes } from 'node:crypto';
import { hkdf, hmac, safeEqual } from '../crypto.ts';
import { idFromBytes, idToBytes } from '../ids.ts';

export const LINK_MAGIC = Buffer.from('SHLK', 'ascii');
export const LINK_VERSION = 1;
const NONCE_BYTES = 32;
const PROOF_BYTES = 32;

/** Handshake message types. ONLY APPEND TO THIS LIST. */
const HELLO = 1;
const CHALLENGE = 2;
const PROOF = 3;

export interface LinkKeys {
  tag: Buffer;
  linkKey: Buffer;
}

export interface HandshakeParty {
  id: string;
  generation: number;
}

export interface SessionKeys {
  send: Buffer;
  receive: Buffer;
}

export type HandshakeRejection = 'malformed' | 'version' | 'cluster' | 'auth' | 'self';

export type Step<T> = ({ ok: true } & T) | { ok: false; reason: HandshakeRejection };

export interface DialerState {
  self: HandshakeParty;
  nonce: Buffer;
}

export interface ListenerState {
  self: HandshakeParty;
  remote: HandshakeParty;
  transcript: Buffer;
  nonces: Buffer;
}

export function dialerHello(keys: LinkKeys, self: HandshakeParty, nonce = randomBytes(NONCE_BYTES)) {
  const message = Buffer.concat([
    header(HELLO),
    keys.tag.subarray(0, 8),
    idToBytes(self.id),
    u32(self.generation),
    nonce,
  ]);
  return { message, state: { self, nonce } satisfies DialerState };
}

export function listenerRespond(
  keys: LinkKeys,
  self: HandshakeParty,
  hello: Buffer,
  nonce = randomBytes(NONCE_BYTES),
): Step<{ message: Buffer; state: ListenerState }> {
  const bad = checkHeader(hello, HELLO, 6 + 8 + 16 + 4 + NONCE_BYTES);
  if (bad) return bad;
  if (!hello.subarray(6, 14).equals(keys.tag.subarray(0, 8))) return { ok: false, reason: 'cluster' };
  const remote = { id: idFromBytes(hello.subarray(14, 30)), generation: hello.readUInt32BE(30) };
  if (remote.id === self.id) return { ok: false, reason: 'self' };
  const dialerNonce = hello.subarray(34, 34 + NONCE_BYTES);
  const transcript = transcriptOf(remote, self, dialerNonce, nonce);
  const proof = hmac(keys.linkKey, 'listener', transcript);
  const message = Buffer.concat([header(CHALLENGE), idToBytes(self.id), u32(self.generation), nonce, proof]);
  return {
    ok: true,
    message,
    state: { self, remote, transcript, nonces: Buffer.concat([dialerNonce, nonce]) },
  };
}

export function dialerFinish(
  keys: LinkKeys,
  state: DialerState,
  challenge: Buffer,
): Step<{ message: Buffer; session: SessionKeys; remote: HandshakeParty }> {
  const bad = checkHeader(challenge, CHALLENGE, 6 + 16 + 4 + NONCE_BYTES + PROOF_BYTES);
  if (bad) return bad;
  const remote = { id: idFromBytes(challenge.subarray(6, 22)), generation: challenge.readUInt32BE(22) };
  if (remote.id === state.self.id) return { ok: false, reason: 'self' };
  const listenerNonce = challenge.subarray(26, 26 + NONCE_BYTES);
  const proof = challenge.subarray(26 + NONCE_BYTES);
  const transcript = transcriptOf(state.self, remote, state.nonce, listenerNonce);
  if (!safeEqual(proof, hmac(keys.linkKey, 'listener', transcript))) return { ok: false, reason: 'auth' };
  const message = Buffer.concat([header(PROOF), hmac(keys.linkKey, 'dialer', transcript)]);
  const k = sessionKeys(keys.linkKey, Buffer.concat([state.nonce, listenerNonce]));
  return { ok: true, message, remote, session: { send: k.dialerToListener, receive: k.listenerToDialer } };
}

export function listenerFinish(
  keys: LinkKeys,
  state: ListenerState,
  proofMessage: Buffer,
): Step<{ session: SessionKeys; remote: HandshakeParty }> {
  const bad = checkHeader(proofMessage, PROOF, 6 + PROOF_BYTES);
  if (bad) return bad;
  const expected = hmac(keys.linkKey, 'dialer', state.transcript);
  if (!safeEqual(proofMessage.subarray(6), expected)) return { ok: false, reason: 'auth' };
  const k = sessionKeys(keys.linkKey, state.nonces);
  return {
    ok: true,
    remote: state.remote,
    session: { send: k.listenerToDialer, receive: k.dialerToListener },
  };
}

function sessionKeys(linkKey: Buffer, nonces: Buffer) {
  return {
    dialerToListener: hkdf(linkKey, 'shoal/v1 d->l', 32, nonces),
    listenerToDialer: hkdf(linkKey, 'shoal/v1 l->d', 32, nonces),
  };
}

function transcriptOf(dialer: HandshakeParty, listener: HandshakeParty, nD: Buffer, nL: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from('shoal/v1 link'),
    idToBytes(dialer.id),
    idToBytes(listener.id),
    u32(dialer.generation),
    u32(listener.generation),
    nD,
    nL,
  ]);
}

function header(type: number): Buffer {
  return Buffer.concat([LINK_MAGIC, Buffer.from([LINK_VERSION, type])]);
}

function checkHeader(
  message: Buffer,
  type: number,
  length: number,
): { ok: false; reason: HandshakeRejection } | undefined {
  if (message.length < 6 || !message.subarray(0, 4).equals(LINK_MAGIC))
    return { ok: false, reason: 'malformed' };
  if (message.readUInt8(4) !== LINK_VERSION) return { ok: false, reason: 'version' };
  if (message.readUInt8(5) !== type || message.length !== length) return { ok: false, reason: 'malformed' };
  return undefined;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
