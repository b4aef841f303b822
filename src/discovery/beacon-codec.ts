/**
 * The beacon: one UDP datagram, at most 1 KiB, big-endian.
 *
 *   offset size  field
 *        0    4  magic "SHOL"
 *        4    1  version (1)
 *        5    1  kind: 1 hello (periodic / at start), 2 reply (to an unknown sender), 3 bye
 *        6    2  flags, reserved, 0
 *        8    8  cluster tag (from the secret; other clusters are skipped on it)
 *       16   16  sender id
 *       32    4  generation: goes up at every start of the sender
 *       36    8  timestamp, ms since the epoch
 *       44    8  random nonce (with the id, the replay-cache key)
 *       52    2  link port (TCP)
 *       54  1+n  host the sender listens on, UTF-8, length-prefixed; empty = "my source address"
 *          1+n  name, UTF-8, length-prefixed (at most 64 bytes)
 *          1+n  software version, UTF-8, length-prefixed (at most 32 bytes)
 *            *  extensions: bytes a later version may add; covered by the MAC, ignored here
 *   last   16  MAC: HMAC-SHA256(beaconKey, every byte before it), first 16 bytes
 *
 * The MAC covers everything, host and port included, so a forged or altered beacon cannot steer a
 * peer anywhere. Decoding never throws: it returns a rejection with a reason that is counted.
 */

import { hmac, safeEqual } from '../crypto.ts';
import { idFromBytes, idToBytes } from '../ids.ts';

export const BEACON_MAGIC = Buffer.from('SHOL', 'ascii');
export const BEACON_VERSION = 1;
export const MAX_BEACON_BYTES = 1024;
const MAC_BYTES = 16;
const FIXED_BYTES = 54;
const MIN_BYTES = FIXED_BYTES + 3 + MAC_BYTES;

/** Beacon kinds. ONLY APPEND TO THIS LIST. */
export const BeaconKind = { hello: 1, reply: 2, bye: 3 } as const;
export type BeaconKindName = keyof typeof BeaconKind;
const KIND_NAMES = new Map<number, BeaconKindName>(
  Object.entries(BeaconKind).map(([name, code]) => [code, name as BeaconKindName]),
);

export interface Beacon {
  kind: BeaconKindName;
  senderId: string;
  generation: number;
  timestampMs: number;
  nonce: Buffer;
  port: number;
  host: string;
  name: string;
  version: string;
}

/** Why a datagram was not accepted as a beacon; each is a label of the rejection counter. */
export type BeaconRejection =
  | 'size'
  | 'magic'
  | 'version'
  | 'cluster'
  | 'malformed'
  | 'mac'
  | 'clock'
  | 'replay'
  | 'rate'
  | 'source';

export type DecodeResult = { ok: true; beacon: Beacon } | { ok: false; reason: BeaconRejection };

export interface BeaconKeys {
  tag: Buffer;
  beaconKey: Buffer;
}

export function encodeBeacon(beacon: Beacon, keys: BeaconKeys): Buffer {
  const head = Buffer.alloc(FIXED_BYTES);
  BEACON_MAGIC.copy(head, 0);
  head.writeUInt8(BEACON_VERSION, 4);
  head.writeUInt8(BeaconKind[beacon.kind], 5);
  head.writeUInt16BE(0, 6);
  keys.tag.copy(head, 8, 0, 8);
  idToBytes(beacon.senderId).copy(head, 16);
  head.writeUInt32BE(beacon.generation >>> 0, 32);
  head.writeBigUInt64BE(BigInt(Math.trunc(beacon.timestampMs)), 36);
  beacon.nonce.copy(head, 44, 0, 8);
  head.writeUInt16BE(beacon.port, 52);
  const body = Buffer.concat([
    head,
    shortString(beacon.host, 255),
    shortString(beacon.name, 64),
    shortString(beacon.version, 32),
  ]);
  return Buffer.concat([body, hmac(keys.beaconKey, body).subarray(0, MAC_BYTES)]);
}

export function decodeBeacon(datagram: Buffer, keys: BeaconKeys): DecodeResult {
  if (datagram.length < MIN_BYTES || datagram.length > MAX_BEACON_BYTES) return reject('size');
  if (!datagram.subarray(0, 4).equals(BEACON_MAGIC)) return reject('magic');
  if (datagram.readUInt8(4) !== BEACON_VERSION) return reject('version');
  if (!datagram.subarray(8, 16).equals(keys.tag.subarray(0, 8))) return reject('cluster');
  const body = datagram.subarray(0, datagram.length - MAC_BYTES);
  const mac = datagram.subarray(datagram.length - MAC_BYTES);
  if (!safeEqual(mac, hmac(keys.beaconKey, body).subarray(0, MAC_BYTES))) return reject('mac');

  const kind = KIND_NAMES.get(body.readUInt8(5));
  if (!kind) return reject('malformed');
  const reader = { offset: FIXED_BYTES };
  const host = readShortString(body, reader);
  const name = readShortString(body, reader);
  const version = readShortString(body, reader);
  if (host === undefined || name === undefined || version === undefined) return reject('malformed');
  const port = body.readUInt16BE(52);
  if (port === 0) return reject('malformed');
  return {
    ok: true,
    beacon: {
      kind,
      senderId: idFromBytes(body.subarray(16, 32)),
      generation: body.readUInt32BE(32),
      timestampMs: Number(body.readBigUInt64BE(36)),
      nonce: Buffer.from(body.subarray(44, 52)),
      port,
      host,
      name,
      version,
    },
  };
}

function reject(reason: BeaconRejection): DecodeResult {
  return { ok: false, reason };
}

/** A length-prefixed UTF-8 string, cut to at most `max` bytes on a character boundary. */
function shortString(value: string, max: number): Buffer {
  let bytes = Buffer.from(value, 'utf8');
  if (bytes.length > max) {
    bytes = bytes.subarray(0, max);
    while (bytes.length > 0 && !isWholeUtf8(bytes)) bytes = bytes.subarray(0, bytes.length - 1);
  }
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

function isWholeUtf8(bytes: Buffer): boolean {
  return Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes);
}

function readShortString(buf: Buffer, reader: { offset: number }): string | undefined {
  if (reader.offset >= buf.length) return undefined;
  const length = buf.readUInt8(reader.offset);
  const start = reader.offset + 1;
  if (start + length > buf.length) return undefined;
  reader.offset = start + length;
  try {
    return strictUtf8.decode(buf.subarray(start, start + length));
  } catch {
    return undefined;
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
