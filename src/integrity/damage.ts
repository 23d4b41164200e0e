/**
 * Damaged rows met while reading: each is skipped by the reader, logged once with its ids, counted, and
 * remembered so that `hearth doctor` can find it. Reads degrade; they never crash on one bad row.
 */
import type { Logger } from 'pino';

export type DamageKind =
  | 'event_json_unparsable'
  | 'event_missing'
  | 'state_snapshot_missing'
  | 'state_entry_dangling'
  | 'membership_mismatch';

export interface DamageRecord {
  kind: DamageKind;
  roomId?: string | undefined;
  eventId?: string | undefined;
  detail: string;
}

export class DamageReporter {
  readonly counts = new Map<DamageKind, number>();
  #seen = new Set<string>();
  #pending: DamageRecord[] = [];

  constructor(private readonly log: Logger) {}

  report(rec: DamageRecord): void {
    this.counts.set(rec.kind, (this.counts.get(rec.kind) ?? 0) + 1);
    const key = `${rec.kind}|${rec.roomId ?? ''}|${rec.eventId ?? ''}`;
    if (this.#seen.has(key)) return;
    if (this.#seen.size > 10_000) this.#seen.clear();
    this.#seen.add(key);
    this.log.warn(
      { damage: rec.kind, room_id: rec.roomId, event_id: rec.eventId },
      `damaged row skipped: ${rec.detail}`,
    );
    if (this.#pending.length < 10_000) this.#pending.push(rec);
  }

  /** Records reported since the last call (the storage layer persists them for the doctor). */
  takePending(): DamageRecord[] {
    const out = this.#pending;
    this.#pending = [];
    return out;
  }
}
