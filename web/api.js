/**
 * Talking to the peer that serves the page: the HTTP API (JSON, `Authorization: Bearer KEY`) and
 * the /api/v1/stream WebSocket (the key in a first `auth` message, then events; writes as
 * `{t:"set", rid, id, value}` answered by `{t:"result", rid, ok, node?, error?}`).
 *
 * The key is kept in localStorage, which is per origin: each server's dashboard keeps its own.
 */

const KEY_STORAGE = 'shoal.apiKey';
/** A write over the stream that gets no result within this is failed. */
const WRITE_TIMEOUT_MS = 15_000;

export const apiKey = {
  get: () => localStorage.getItem(KEY_STORAGE) ?? '',
  set: (key) => localStorage.setItem(KEY_STORAGE, key),
  clear: () => localStorage.removeItem(KEY_STORAGE),
};

/** An error answer of the API (or of the network), with the API's code and message. */
export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Called when the server refuses the key (401 or stream close 4401). */
let unauthorized = () => {};
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** One API call; resolves to the parsed answer, rejects with an ApiError. */
export async function api(method, path, body, key = apiKey.get()) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError('NETWORK', 'the server did not answer (is it running?)');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: a proxy's error page, say. The status tells enough.
  }
  if (res.ok) return data;
  const error = new ApiError(
    data?.error?.code ?? `HTTP_${res.status}`,
    data?.error?.message ?? `${res.status} ${res.statusText}`,
    res.status,
  );
  if (res.status === 401 && key === apiKey.get()) unauthorized(error);
  throw error;
}

/**
 * The live stream. `open()` connects and authenticates; the owner reconnects after `onDown`.
 * Writes made while it is not open fail at once so the caller can use HTTP instead.
 */
class Stream {
  #ws = null;
  #rid = 0;
  #pending = new Map();

  /** Set by the page: onHello(hello), onEvent(event), onDown(reason), onRefused(). */
  handlers = { onHello() {}, onEvent() {}, onDown() {}, onRefused() {} };
  live = false;

  open(key) {
    this.close();
    const ws = new WebSocket(
      `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/stream`,
    );
    this.#ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ t: 'auth', key }));
    ws.onmessage = (message) => {
      if (this.#ws !== ws) return;
      let m;
      try {
        m = JSON.parse(message.data);
      } catch {
        return;
      }
      if (m.t === 'event') this.handlers.onEvent(m.event);
      else if (m.t === 'result') this.#settle(m);
      else if (m.t === 'hello') {
        this.live = true;
        this.handlers.onHello(m);
      } else if (m.t === 'error') console.warn('shoal stream:', m.error);
    };
    ws.onclose = (e) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.live = false;
      this.#failAll('the connection to the server was lost');
      if (e.code === 4401) this.handlers.onRefused();
      else this.handlers.onDown(e.reason || (e.code === 1013 ? 'too slow' : 'connection lost'));
    };
  }

  close() {
    const ws = this.#ws;
    this.#ws = null;
    this.live = false;
    this.#failAll('closed');
    if (ws) ws.close();
  }

  /** Sends a write (`{t:'set', id, value}`, …); resolves to the stored node. */
  write(message) {
    if (!this.live || !this.#ws) return Promise.reject(new ApiError('NOT_OPEN', 'the stream is not open'));
    const rid = ++this.#rid;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(rid);
        reject(new ApiError('TIMEOUT', 'no answer from the server in time'));
      }, WRITE_TIMEOUT_MS);
      this.#pending.set(rid, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...message, rid }));
    });
  }

  #settle(result) {
    const pending = this.#pending.get(result.rid);
    if (!pending) return;
    this.#pending.delete(result.rid);
    clearTimeout(pending.timer);
    if (result.ok) pending.resolve(result.node ?? null);
    else
      pending.reject(
        new ApiError(result.error?.code ?? 'ERROR', result.error?.message ?? 'the write failed'),
      );
  }

  #failAll(message) {
    for (const { reject, timer } of this.#pending.values()) {
      clearTimeout(timer);
      reject(new ApiError('NOT_LIVE', message));
    }
    this.#pending.clear();
  }
}

export const stream = new Stream();

const nodePath = (id) => `/api/v1/nodes/${encodeURIComponent(id)}`;

/** Sets a data point's value: over the stream when it is open, else with PUT. */
export async function setValue(id, value) {
  try {
    return await stream.write({ t: 'set', id, value });
  } catch (err) {
    if (err.code !== 'NOT_OPEN') throw err;
    return api('PUT', `${nodePath(id)}/value`, { value });
  }
}

export const createNode = (node) => api('POST', '/api/v1/nodes', node);
export const updateNode = (id, change) => api('PATCH', nodePath(id), change);
export const deleteNode = (id) => api('DELETE', nodePath(id));
export const retireServer = (id) => api('DELETE', `/api/v1/peers/${encodeURIComponent(id)}`);
export const fireNode = (id) => api('POST', `${nodePath(id)}/fire`);
