/**
 * The application service queue (migration 0017): each service's delivered position is at most the stream head (a
 * position beyond it would skip what is written next), its unacknowledged transaction covers a range within
 * [position, head] and has a readable body, and every row belongs to a configured service (a service removed from
 * `app_service_config_files` leaves rows nobody reads). With repair: a position beyond the head is set to the head, a
 * broken transaction is dropped (the range is built again under a new id), a removed service's rows are deleted.
 */
import type { Transaction } from 'kysely';
import { allAppserviceStates, allPendingTxns, deleteAppserviceRows } from '../storage/appservice.js';
import type { Database } from '../storage/schema.js';
import type { Executor } from '../storage/users.js';
import type { Problem } from './problems.js';

function bodyProblem(text: string): string | undefined {
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'a body that is not a JSON object';
    if (!Array.isArray((v as { events?: unknown }).events)) return 'a body without an events list';
    return undefined;
  } catch {
    return 'an unreadable body';
  }
}

/**
 * `configured`: the ids of the services in the configuration, or undefined when the caller does not know them (the
 * rows of unknown services are then not judged).
 */
export async function appserviceProblems(
  db: Executor,
  repair: Transaction<Database> | undefined,
  head: number,
  configured: ReadonlySet<string> | undefined,
): Promise<Problem[]> {
  const problems: Problem[] = [];
  const report = (detail: string): void => {
    problems.push({ kind: 'appservice_queue_invalid', roomId: null, eventId: null, detail });
  };
  const states = await allAppserviceStates(db);
  const positions = new Map(states.map((s) => [s.asId, s.streamPos]));
  const removed = new Set<string>();
  for (const s of states) {
    if (configured && !configured.has(s.asId)) {
      report(`appservice_state row for ${s.asId}, which is not a configured application service`);
      removed.add(s.asId);
      continue;
    }
    if (s.streamPos > head) {
      report(`application service ${s.asId} is at stream position ${s.streamPos}, beyond the head ${head}`);
      if (repair)
        await repair
          .updateTable('appservice_state')
          .set({ stream_pos: head })
          .where('as_id', '=', s.asId)
          .execute();
    }
  }
  for (const t of await allPendingTxns(db)) {
    if (configured && !configured.has(t.asId)) {
      if (!removed.has(t.asId))
        report(`appservice_txns row for ${t.asId}, which is not a configured application service`);
      removed.add(t.asId);
      continue;
    }
    const position = positions.get(t.asId);
    let why: string | undefined;
    if (position === undefined) why = 'has no appservice_state row';
    else if (t.fromPos > t.toPos) why = `covers an empty range (${t.fromPos}, ${t.toPos}]`;
    else if (t.toPos > head) why = `ends at ${t.toPos}, beyond the head ${head}`;
    else if (t.fromPos < position) why = `starts at ${t.fromPos}, before the delivered position ${position}`;
    else why = bodyProblem(t.body);
    if (why === undefined) continue;
    report(`transaction ${t.txnId} of application service ${t.asId} ${why}`);
    if (repair) await repair.deleteFrom('appservice_txns').where('as_id', '=', t.asId).execute();
  }
  if (repair) for (const id of removed) await deleteAppserviceRows(repair, id);
  return problems;
}
