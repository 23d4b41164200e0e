/**
 * The outbound federation queue: every `federation_outbox` row is either a PDU row naming an event this server may
 * send (it exists, has a place in the room's timeline, and was not rejected or soft-failed) or an EDU row with a type
 * and a JSON object as content. Anything else would be skipped by the sender at every attempt; with repair it is
 * quarantined (kept in `quarantine`, reversible) and removed from the queue.
 */
import type { Transaction } from 'kysely';
import { quarantineRow } from '../storage/quarantine.js';
import type { Database } from '../storage/schema.js';
import type { Executor } from '../storage/users.js';
import type { Problem } from './problems.js';

function isJsonObject(text: string): boolean {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}

export async function outboxProblems(
  db: Executor,
  repair: Transaction<Database> | undefined,
): Promise<Problem[]> {
  const rows = await db
    .selectFrom('federation_outbox as o')
    .leftJoin('events as e', 'e.event_nid', 'o.event_nid')
    .select([
      'o.id',
      'o.destination',
      'o.event_nid',
      'o.room_nid',
      'o.edu_type',
      'o.edu_content',
      'o.created_ts',
      'e.event_id',
      'e.outlier',
      'e.json',
    ])
    .execute();
  const problems: Problem[] = [];
  for (const r of rows) {
    let why: string | undefined;
    if (r.event_nid !== null) {
      if (r.edu_type !== null || r.edu_content !== null) why = 'is both a PDU and an EDU row';
      else if (r.event_id === null) why = `names event ${Number(r.event_nid)}, which does not exist`;
      else if (Number(r.outlier) === 1)
        why = `names ${r.event_id}, an outlier (rejected, soft-failed or unplaced)`;
      else if (r.json === null || !isJsonObject(r.json))
        why = `names ${r.event_id}, whose JSON is unreadable`;
    } else if (r.edu_type === null) why = 'has neither an event nor an EDU type';
    else if (r.edu_content === null || !isJsonObject(r.edu_content))
      why = `has unreadable ${r.edu_type} content`;
    if (why === undefined) continue;
    problems.push({
      kind: 'outbox_row_invalid',
      roomId: null,
      eventId: r.event_id ?? null,
      detail: `federation_outbox row ${Number(r.id)} for ${r.destination} ${why}`,
    });
    if (!repair) continue;
    await quarantineRow(
      repair,
      'federation_outbox',
      {
        id: r.id,
        destination: r.destination,
        event_nid: r.event_nid,
        room_nid: r.room_nid,
        edu_type: r.edu_type,
        edu_content: r.edu_content,
        created_ts: r.created_ts,
      },
      why,
    );
    await repair.deleteFrom('federation_outbox').where('id', '=', r.id).execute();
  }
  return problems;
}
