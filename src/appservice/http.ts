/**
 * Requests from the homeserver to an application service (`/_matrix/app/v1/...`), authenticated with its hs_token:
 * the `Authorization: Bearer` header (spec v1.4+) and the legacy `access_token` query parameter that Synapse 1.x
 * also sent, so that older bridges accept it.
 */
import type { AppService } from './registration.js';

export type AppServiceFailure = 'url_not_set' | 'timeout' | 'connection_failed';

/** The request did not get an HTTP answer (or was never made because the AS has no url). */
export class AppServiceRequestError extends Error {
  constructor(
    readonly kind: AppServiceFailure,
    message: string,
  ) {
    super(message);
    this.name = 'AppServiceRequestError';
  }
}

export interface AppServiceRequest {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** Under the AS url, e.g. `/_matrix/app/v1/users/@a:b` (segments already encoded by the caller). */
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  timeoutMs?: number;
}

export interface AppServiceResponse {
  status: number;
  /** The parsed JSON body, or null when the answer was not JSON. */
  body: unknown;
}

const DEFAULT_TIMEOUT_MS = 60_000;
/** Answers larger than this are not parsed (an AS has no reason to send more). */
const MAX_BODY_BYTES = 10 * 1024 * 1024;

export async function appServiceRequest(as: AppService, req: AppServiceRequest): Promise<AppServiceResponse> {
  if (as.url === null)
    throw new AppServiceRequestError('url_not_set', `application service ${as.id} has no url`);
  let url: URL;
  try {
    url = new URL(as.url.replace(/\/+$/, '') + req.path);
  } catch {
    throw new AppServiceRequestError('connection_failed', `application service ${as.id} has an invalid url`);
  }
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
  url.searchParams.set('access_token', as.hsToken);
  const headers: Record<string, string> = { authorization: `Bearer ${as.hsToken}` };
  if (req.body !== undefined) headers['content-type'] = 'application/json';
  const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let res: Response;
  try {
    res = await fetch(url, {
      method: req.method,
      headers,
      body: req.body === undefined ? undefined : JSON.stringify(req.body),
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'TimeoutError' || name === 'AbortError')
      throw new AppServiceRequestError(
        'timeout',
        `application service ${as.id} did not answer in ${timeoutMs} ms`,
      );
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new AppServiceRequestError(
      'connection_failed',
      `cannot reach application service ${as.id}: ${cause ?? (err as Error).message}`,
    );
  }
  let body: unknown = null;
  try {
    const len = Number(res.headers.get('content-length') ?? '0');
    if (len <= MAX_BODY_BYTES) {
      const text = await res.text();
      if (text.length <= MAX_BODY_BYTES && text.trim() !== '') body = JSON.parse(text) as unknown;
    } else {
      await res.body?.cancel();
    }
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'TimeoutError' || name === 'AbortError')
      throw new AppServiceRequestError(
        'timeout',
        `application service ${as.id} did not answer in ${timeoutMs} ms`,
      );
    body = null;
  }
  return { status: res.status, body };
}
