/**
 * Keys and primitives derived from the cluster secret. The secret itself never leaves the process:
 *
 *   master    = scrypt(secret, "shoal cluster secret v1")   (slow on purpose, see below)
 *   tag       = HKDF(master, "shoal/v1 cluster tag")  8 bytes, sent in clear in every beacon so
 *               peers of another cluster are skipped without a MAC check
 *   beaconKey = HKDF(master, "shoal/v1 beacon mac")   HMAC-SHA256 key for beacons
 *   linkKey   = HKDF(master, "shoal/v1 link auth")    challenge-response key for links; per-link
 *               session keys are derived from it and both sides' fresh nonces
 *
 * Anyone who captures one beacon can test guesses of the secret offline. scrypt makes each guess
 * cost ~50 ms of CPU and 16 MiB of memory, which does not save a 4-digit PIN (hence the warning)
 * but puts a random 256-bit secret from `shoal init` far out of reach.
 */

import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  scryptSync,
  timingSafeEqual,
} from 'node:crypto';

export interface ClusterKeys {
  tag: Buffer;
  beaconKey: Buffer;
  linkKey: Buffer;
}

const SCRYPT = { N: 1 << 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;

export function deriveClusterKeys(secret: string): ClusterKeys {
  const master = scryptSync(secret.normalize('NFC'), 'shoal cluster secret v1', 32, SCRYPT);
  return {
    tag: hkdf(master, 'shoal/v1 cluster tag', 8),
    beaconKey: hkdf(master, 'shoal/v1 beacon mac', 32),
    linkKey: hkdf(master, 'shoal/v1 link auth', 32),
  };
}

export function hkdf(key: Buffer, info: string, length: number, salt: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, info, length));
}

/** HMAC-SHA256 over the concatenation of `parts`. */
export function hmac(key: Buffer, ...parts: (Buffer | string)[]): Buffer {
  const h = createHmac('sha256', key);
  for (const part of parts) h.update(part);
  return h.digest();
}

/** Constant-time comparison that is also safe for buffers of different lengths. */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A strong random cluster secret: 32 random bytes, base64url (43 characters). */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Why a secret is weak, or undefined when it is fine. */
export function secretWeakness(secret: string): string | undefined {
  if (/^\d+$/.test(secret)) {
    return 'the cluster secret is a numeric PIN: anyone who captures one beacon can guess it offline. Use `shoal init` to make a strong one';
  }
  if (secret.length < 16) {
    return `the cluster secret has only ${secret.length} characters and can be guessed offline from one captured beacon. Use \`shoal init\` to make a strong one`;
  }
  return undefined;
}

const TAG_BYTES = 16;

/**
 * Seals frames in one direction of a link with AES-256-GCM. The 96-bit nonce is a counter that
 * starts at 0 and goes up by one per frame, never reused under one key; the receiver expects
 * exactly the next counter, so a replayed, dropped, reordered or altered frame fails to open.
 */
export class FrameSealer {
  #counter = 0n;
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  seal(plaintext: Buffer): Buffer {
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonceFor(this.#counter++));
    const body = cipher.update(plaintext);
    cipher.final();
    return Buffer.concat([body, cipher.getAuthTag()]);
  }
}

export class FrameOpener {
  #counter = 0n;
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  /** The plaintext, or undefined when the frame is not the authentic next frame. */
  open(frame: Buffer): Buffer | undefined {
    if (frame.length < TAG_BYTES) return undefined;
    const decipher = createDecipheriv('aes-256-gcm', this.#key, nonceFor(this.#counter));
    decipher.setAuthTag(frame.subarray(frame.length - TAG_BYTES));
    const body = decipher.update(frame.subarray(0, frame.length - TAG_BYTES));
    try {
      decipher.final();
    } catch {
      return undefined;
    }
    this.#counter++;
    return body;
  }
}

function nonceFor(counter: bigint): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(counter, 4);
  return nonce;
}
