/**
 * OutgoingWebHook delivery: one HTTP request with a timeout, retried with exponential backoff on
 * network errors and 5xx/429 answers. 4xx answers are final (the request itself is wrong).
 */

export interface WebhookRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string | undefined;
  timeoutMs: number;
  retries: number;
  backoffMs: number;
}

export interface WebhookResult {
  ok: boolean;
  status?: number;
  attempts: number;
  error?: string;
}

export async function deliver(
  request: WebhookRequest,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): Promise<WebhookResult> {
  let last: WebhookResult = { ok: false, attempts: 0 };
  for (let attempt = 1; attempt <= request.retries + 1; attempt++) {
    try {
      const response = await fetch(request.url, {
        method: request.method,
        headers: request.headers,
        // fetch refuses a body on GET and HEAD, and the engine always has one to offer.
        ...(request.body === undefined || request.method === 'GET' || request.method === 'HEAD'
          ? {}
          : { body: request.body }),
        signal: AbortSignal.timeout(request.timeoutMs),
      });
      // Only the status counts: the body is dropped unread (reading it whole let an endless or
      // huge answer fill the memory).
      await response.body?.cancel().catch(() => undefined);
      if (response.ok) return { ok: true, status: response.status, attempts: attempt };
      last = { ok: false, status: response.status, attempts: attempt, error: `answered ${response.status}` };
      if (response.status < 500 && response.status !== 429) return last;
    } catch (err) {
      const reason =
        (err as Error).name === 'TimeoutError'
          ? `no answer within ${request.timeoutMs} ms`
          : (err as Error).message;
      last = { ok: false, attempts: attempt, error: reason };
    }
    if (attempt <= request.retries) await sleep(request.backoffMs * 2 ** (attempt - 1));
  }
  return last;
}
