/**
 * API keys. Clients send `Authorization: Bearer KEY`. The admin key is made on first start and
 * kept in `<data>/admin.key`; keys are compared as SHA-256 digests in constant time, so neither
 * the comparison nor the table leaks a key.
 */

import { createHash, timingSafeEqual } from 'node:crypto';

export type Scope = 'admin' | 'read';

export class ApiKeys {
  readonly #keys: { digest: Buffer; scope: Scope }[] = [];

  add(key: string, scope: Scope): void {
    this.#keys.push({ digest: digest(key), scope });
  }

  /** The scope of a valid key, or undefined. */
  scopeOf(key: string): Scope | undefined {
    const d = digest(key);
    let scope: Scope | undefined;
    for (const entry of this.#keys) if (timingSafeEqual(entry.digest, d)) scope ??= entry.scope;
    return scope;
  }
}

/** The key in an `Authorization: Bearer KEY` header, if any. */
export function bearerKey(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}
