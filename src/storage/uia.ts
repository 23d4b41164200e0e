/** User-interactive authentication sessions. */
import type { Executor } from './users.js';

export interface UiaSession {
  sessionId: string;
  createdTs: number;
  completed: string[];
  requestKey: string;
  userId: string | null;
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
  return {
    sessionId: row.session_id,
    createdTs: row.created_ts,
    completed,
    requestKey: row.request_key,
    userId: row.user_id,
  };
}

export async function setUiaCompleted(db: Executor, sessionId: string, completed: string[]): Promise<void> {
  await db
    .updateTable('uia_sessions')
    .set({ completed: JSON.stringify(completed) })
    .where('session_id', '=', sessionId)
    .execute();
}

export async function deleteUiaSession(db: Executor, sessionId: string): Promise<void> {
  await db.deleteFrom('uia_sessions').where('session_id', '=', sessionId).execute();
}

export async function deleteExpiredUiaSessions(db: Executor, olderThan: number): Promise<void> {
  await db.deleteFrom('uia_sessions').where('created_ts', '<', olderThan).execute();
}
