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
  | 'membership_mismatch'
  | 'outbox_row_unparsable'
  | 'profile_field_unparsable';

export interface DamageRecord {
  kind: DamageKind;
  roomId?: string | undefined;
  eventId?: string | undefined;
  detail: string;
}

export type DamageSink = (records: DamageRecord[]) => Promise<void>;

export class DamageReporter {
  readonly counts = new Map<DamageKind, number>();
  #seen = new Set<string>();
  #pending: DamageRecord[] = [];
  #sink: DamageSink | undefined;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(private readonly log: Logger) {}

  /** Where records go (the damage_reports table); written shortly after they are reported. */
  attach(sink: DamageSink): void {
    this.#sink = sink;
  }

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
    if (this.#sink && !this.#timer) {
      this.#timer = setTimeout(() => void this.flush(), 100);
      this.#timer.unref?.();
    }
  }

  /** Writes pending records to the sink; failures are logged, never thrown at a reader. */
  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const sink = this.#sink;
    const records = this.takePending();
    if (!sink || records.length === 0) return this.#flushing;
    this.#flushing = this.#flushing.then(() =>
      sink(records).catch((err: unknown) => this.log.error({ err }, 'could not record damaged rows')),
    );
    return this.#flushing;
  }

  /** Records reported since the last call (the storage layer persists them for the doctor). */
  takePending(): DamageRecord[] {
    const out = this.#pending;
    this.#pending = [];
    return out;
  }
}
