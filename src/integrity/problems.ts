/** What `hearth doctor` reports, and the counters it keeps for the metrics module. */

export type ProblemKind =
  | 'event_json_missing'
  | 'event_json_unparsable'
  | 'event_hash_mismatch'
  | 'event_content_hash_mismatch'
  | 'stream_ordering_missing'
  | 'stream_ordering_duplicate'
  | 'snapshot_missing'
  | 'snapshot_chain_broken'
  | 'snapshot_chain_cycle'
  | 'snapshot_chain_too_long'
  | 'snapshot_entry_dangling'
  | 'state_mismatch'
  | 'edge_dangling'
  | 'edge_rows_mismatch'
  | 'forward_extremities_mismatch'
  | 'current_snapshot_mismatch'
  | 'current_state_mismatch'
  | 'room_members_mismatch'
  | 'txn_id_dangling'
  | 'device_row_dangling'
  | 'outbox_row_invalid'
  | 'appservice_queue_invalid'
  | 'damage_report'
  | 'cache_mismatch'
  | 'media_file_orphan'
  | 'media_file_missing';

export interface Problem {
  kind: ProblemKind;
  roomId: string | null;
  eventId: string | null;
  detail: string;
}

/** One line per problem: kind, room, event, what is wrong (tab-separated, `-` for none). */
export function formatProblem(p: Problem): string {
  return `${p.kind}\t${p.roomId ?? '-'}\t${p.eventId ?? '-'}\t${p.detail}`;
}

export function countByKind(problems: readonly Problem[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of problems) out[p.kind] = (out[p.kind] ?? 0) + 1;
  return out;
}

/**
 * Counters for src/metrics: plain numbers, process-wide. `lastRunProblems` holds the problems of the last doctor
 * run by kind (before repair); the totals only grow.
 */
export const integrityCounters = {
  eventsQuarantinedTotal: 0,
  rowsQuarantinedTotal: 0,
  cacheMismatchesTotal: 0,
  doctorRunsTotal: 0,
  lastRunProblems: {} as Record<string, number>,
  lastRunTs: 0,
};

export function eventsQuarantinedTotal(): number {
  return integrityCounters.eventsQuarantinedTotal;
}
export function cacheMismatchesTotal(): number {
  return integrityCounters.cacheMismatchesTotal;
}
export function lastRunProblemsByKind(): Readonly<Record<string, number>> {
  return integrityCounters.lastRunProblems;
}
