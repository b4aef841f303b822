/**
 * API keys. Clients send `Authorization: Bearer KEY`. Each key has a scope: `admin` may do
 * everything, `read` may only read (GET, the event streams) and gets 403 for any write.
 *
 * The admin key of `<data>/admin.key` is made on first start; more keys are made and revoked
 * through the API (`/api/v1/keys`) or `shoal keys`. Keys belong to the server that made them. The
 * store holds only their SHA-256 digests, so neither a copy of the database nor the comparison
 * gives a key away; a new key is shown once, when it is made.
 */

import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { ShoalError } from '../errors.ts';

export type Scope = 'admin' | 'read';

export interface KeyRecord {
  id: string;
  name: string;
  scope: Scope;
  createdAt: string;
  /** The admin key of `<data>/admin.key`: it cannot be revoked through the API. */
  builtin?: boolean;
}

/** Where made keys are kept (the Store). */
export interface KeyStore {
  apiKeys(): (KeyRecord & { digest: string })[];
  insertApiKey(record: KeyRecord & { digest: string }): void;
  deleteApiKey(id: string): boolean;
}

export class ApiKeys {
  readonly #store: KeyStore | undefined;
  /** Digest (hex) to key record, for every valid key. */
  readonly #byDigest = new Map<string, KeyRecord>();

  /** `adminMadeAt`: when the admin key was made (its file's time). */
  constructor(adminKey: string, store?: KeyStore, adminMadeAt = new Date()) {
    this.#store = store;
    this.#byDigest.set(digest(adminKey), {
      id: 'admin',
      name: 'admin.key',
      scope: 'admin',
      createdAt: adminMadeAt.toISOString(),
      builtin: true,
    });
    for (const { digest: d, ...record } of store?.apiKeys() ?? []) this.#byDigest.set(d, record);
  }

  /** The scope of a valid key, or undefined. */
  scopeOf(key: string): Scope | undefined {
    return this.#byDigest.get(digest(key))?.scope;
  }

  /** Oldest first (ISO times: code point order is time order; no locale collation). */
  list(): KeyRecord[] {
    return [...this.#byDigest.values()].sort((a, b) =>
      a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0,
    );
  }

  /** Makes a key; the key itself is in the answer and nowhere else. */
  create(name: string, scope: Scope): KeyRecord & { key: string } {
    const key = `shoal_${randomBytes(24).toString('base64url')}`;
    const record: KeyRecord = { id: randomUUID(), name, scope, createdAt: new Date().toISOString() };
    const d = digest(key);
    this.#store?.insertApiKey({ ...record, digest: d });
    this.#byDigest.set(d, record);
    return { ...record, key };
  }

  revoke(id: string): void {
    const entry = [...this.#byDigest].find(([, r]) => r.id === id);
    if (!entry) throw new ShoalError('SHOAL_NOT_FOUND', `no API key ${id}`);
    if (entry[1].builtin)
      throw new ShoalError(
        'SHOAL_BAD_REQUEST',
        'the admin key of admin.key cannot be revoked; replace the file instead',
      );
    this.#store?.deleteApiKey(id);
    this.#byDigest.delete(entry[0]);
  }
}

/** The key in an `Authorization: Bearer KEY` header, if any. */
export function bearerKey(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}

function digest(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}
