/** User-interactive authentication sessions. */
import type { Executor } from './users.js';

export interface UiaSession {
  sessionId: string;
  createdTs: number;
  completed: string[];
  requestKey: string;
  userId: string | null;
  /** The parameters of the request that started the session (the body minus `auth` and secrets). */
  params: Record<string, unknown>;
  /** Data the operation attached to the session. */
  data: Record<string, string>;
}

function parseObject(json: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(json);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
  } catch {
    // A damaged column reads as empty: the session then behaves as if nothing had been stored.
  }
  return {};
}

export async function createUiaSession(db: Executor, s: UiaSession): Promise<void> {
  await db
    .insertInto('uia_sessions')
    .values({
      session_id: s.sessionId,
      created_ts: s.createdTs,
      completed: JSON.stringify(s.completed),
      request_key: s.requestKey,
      user_id: s.userId,
      params: JSON.stringify(s.params),
      data: JSON.stringify(s.data),
    })
    .execute();
}

export async function getUiaSession(db: Executor, sessionId: string): Promise<UiaSession | undefined> {
  const row = await db
    .selectFrom('uia_sessions')
    .selectAll()
    .where('session_id', '=', sessionId)
    .executeTakeFirst();
  if (!row) return undefined;
  let completed: string[] = [];
  try {
    const parsed: unknown = JSON.parse(row.completed);
    if (Array.isArray(parsed)) completed = parsed.filter((x): x is string => typeof x === 'string');
  } catch {
    completed = [];
  }
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(parseObject(row.data))) if (typeof v === 'string') data[k] = v;
  return {
    sessionId: row.session_id,
    createdTs: row.created_ts,
    completed,
    requestKey: row.request_key,
    userId: row.user_id,
    params: parseObject(row.params),
    data,
  };
}

export async function setUiaCompleted(db: Executor, sessionId: string, completed: string[]): Promise<void> {
  await db
    .updateTable('uia_sessions')
    .set({ completed: JSON.stringify(completed) })
    .where('session_id', '=', sessionId)
    .execute();
}

export async function setUiaParams(
  db: Executor,
  sessionId: string,
  params: Record<string, unknown>,
): Promise<void> {
  await db
    .updateTable('uia_sessions')
    .set({ params: JSON.stringify(params) })
    .where('session_id', '=', sessionId)
    .execute();
}

export async function setUiaData(
  db: Executor,
  sessionId: string,
  data: Record<string, string>,
): Promise<void> {
  await db
    .updateTable('uia_sessions')
    .set({ data: JSON.stringify(data) })
    .where('session_id', '=', sessionId)
    .execute();
}

export async function deleteUiaSession(db: Executor, sessionId: string): Promise<void> {
  await db.deleteFrom('uia_sessions').where('session_id', '=', sessionId).execute();
}

export async function deleteExpiredUiaSessions(db: Executor, olderThan: number): Promise<void> {
  await db.deleteFrom('uia_sessions').where('created_ts', '<', olderThan).execute();
}
