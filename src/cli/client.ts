/** The CLI's HTTP client of a running peer: finds the API key and turns failures into ShoalErrors. */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS, type ErrorCode, ShoalError } from '../errors.ts';

export interface ClientOptions {
  url?: string;
  apiKey?: string;
  data?: string;
}

export const DEFAULT_URL = 'http://127.0.0.1:7420';

/** The peer's URL from --url, else SHOAL_URL, else the default: an http(s) URL, or bad usage. */
function checkedUrl(flag: string | undefined, env: string | undefined): string {
  const [url, from] =
    flag !== undefined ? [flag, '--url'] : env !== undefined ? [env, 'SHOAL_URL'] : [DEFAULT_URL, ''];
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // Reported below.
  }
  if (parsed?.protocol !== 'http:' && parsed?.protocol !== 'https:') {
    throw new ShoalError(
      'SHOAL_BAD_USAGE',
      `${from}: "${url}" is not an http:// or https:// URL (e.g. http://127.0.0.1:7420)`,
    );
  }
  return url.replace(/\/+$/, '');
}

export class ApiClient {
  readonly url: string;
  readonly #key: string | undefined;

  constructor(options: ClientOptions, env: Record<string, string | undefined> = process.env) {
    this.url = checkedUrl(options.url, env.SHOAL_URL);
    this.#key =
      options.apiKey ?? env.SHOAL_API_KEY ?? readKey(options.data ?? env.SHOAL_DATA ?? './shoal-data');
  }

  async get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.#fetch(path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return (text ? safeJson(text) : undefined) as T;
  }

  /** Opens a streaming GET (Server-Sent Events); the caller reads the body. */
  async stream(path: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const response = await this.#fetch(path, {
      headers: { accept: 'text/event-stream' },
      ...(signal ? { signal } : {}),
    });
    return response.body as unknown as AsyncIterable<Uint8Array>;
  }

  /** fetch with the key; throws the API's error (with its code) for any answer but 2xx. */
  async #fetch(path: string, init: RequestInit & { headers: Record<string, string> }): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(this.url + path, {
        ...init,
        headers: { ...init.headers, ...(this.#key ? { authorization: `Bearer ${this.#key}` } : {}) },
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new ShoalError(
        'SHOAL_UNREACHABLE',
        `cannot reach ${this.url} (${cause}); is the peer running? (--url)`,
      );
    }
    if (response.ok) return response;
    const json = safeJson(await response.text());
    const error = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
    const code = error?.code && error.code in ERRORS ? (error.code as ErrorCode) : 'SHOAL_INTERNAL';
    throw new ShoalError(
      code,
      error?.message ?? `${init.method ?? 'GET'} ${path} answered ${response.status}`,
    );
  }
}

function readKey(dataDir: string): string | undefined {
  try {
    return readFileSync(join(dataDir, 'admin.key'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
