/** Helpers shared by the sliding sync HTTP tests (test/sliding-sync/*.test.ts). */
import assert from 'node:assert/strict';
import type { Client, Json, Response } from '../helpers/server.js';

export const SS_PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';
export const V4_PATH = '/_matrix/client/v4/sync';

export interface SsRoom {
  name?: string | null;
  avatar?: string | null;
  heroes?: Json[];
  initial?: boolean;
  required_state?: Json[];
  timeline?: Json[];
  prev_batch?: string;
  limited?: boolean;
  num_live?: number;
  bump_stamp?: number;
  joined_count?: number;
  invited_count?: number;
  notification_count?: number;
  highlight_count?: number;
  invite_state?: Json[];
  knock_state?: Json[];
  stripped_state?: Json[];
  is_dm?: boolean;
  membership?: string;
  lists?: string[];
  unstable_expanded_timeline?: boolean;
  expanded_timeline?: boolean;
}

export interface SsResponse {
  pos: string;
  lists: Record<string, { count: number }>;
  rooms: Record<string, SsRoom>;
  extensions: Json;
}

/** POST to the unstable endpoint with `pos`/`timeout` as query parameters. */
export function ssRaw(
  user: Client,
  body: Json,
  query: { pos?: string; timeout?: number } = {},
): Promise<Response> {
  const qs = Object.entries(query)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`)
    .join('&');
  return user.post(`${SS_PATH}${qs ? `?${qs}` : ''}`, body);
}

export async function ss(
  user: Client,
  body: Json,
  query: { pos?: string; timeout?: number } = {},
): Promise<SsResponse> {
  const res = await ssRaw(user, body, { timeout: 0, ...query });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(typeof res.body.pos, 'string');
  return res.body as unknown as SsResponse;
}

/** A list request body: one list `all` with the given range and room config. */
export function listBody(
  range: [number, number],
  opts: {
    timeline_limit?: number;
    required_state?: [string, string][];
    filters?: Json;
    conn_id?: string;
  } = {},
): Json {
  return {
    ...(opts.conn_id !== undefined ? { conn_id: opts.conn_id } : {}),
    lists: {
      all: {
        ranges: [range],
        timeline_limit: opts.timeline_limit ?? 1,
        required_state: opts.required_state ?? [],
        ...(opts.filters ? { filters: opts.filters } : {}),
      },
    },
  };
}

export const bodiesOf = (events: Json[] | undefined): string[] =>
  (events ?? []).filter((e) => e.type === 'm.room.message').map((e) => (e.content as Json).body as string);

export const stateKeysOf = (events: Json[] | undefined): string[] =>
  (events ?? []).map((e) => `${e.type as string}|${e.state_key as string}`).sort();

/** The room ids of a response in the list order a client would show (by bump_stamp, newest first). */
export const byBump = (r: SsResponse): string[] =>
  Object.entries(r.rooms)
    .sort(([, a], [, b]) => (b.bump_stamp ?? 0) - (a.bump_stamp ?? 0))
    .map(([id]) => id);
