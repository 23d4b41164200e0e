/**
 * Bump stamps of sliding sync's room lists, derived from committed events: `sliding_sync_room_bumps` holds, per room,
 * the stream position of its latest event of a bump type and of its latest event, up to the position in
 * `sliding_sync_bump_mark`. Events committed after that position are read by one indexed range query over the
 * events' stream positions (shared by every request that needs them) into an in-memory overlay, which is written to
 * the table in the background now and then (a restart catches up from the table's mark: never wrong, only slower).
 *
 * Only positions at or below the stream's `current` (all writes before it finished) are read, so nothing committed
 * later can fall behind the mark. Backfilled events (negative positions) are not counted after the migration.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

/** Event types that bump a room to the top of the list (the proposal's "proper" activity). */
export const BUMP_EVENT_TYPES = [
  'm.room.create',
  'm.room.message',
  'm.room.encrypted',
  'm.sticker',
  'm.call.invite',
  'm.poll.start',
  'm.beacon_info',
] as const;

export interface RoomBump {
  /** Latest bump event's position (null: none known). */
  bump: number | null;
  /** Latest event's position (null: none known). */
  last: number | null;
}

/** The overlay is written to the table once it holds this many rooms, or covers this many positions. */
const FLUSH_ROOMS = 1_000;
const FLUSH_POSITIONS = 10_000;
const FLUSH_CHUNK = 200;

function maxOf(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return a > b ? a : b;
}

function num(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

export class BumpIndex {
  /** Position the table covers (undefined: not read yet). */
  #persisted: number | undefined;
  /** Position the table plus overlay cover. */
  #caught = -Infinity;
  #overlay = new Map<number, RoomBump>();
  #flight: Promise<void> | undefined;
  #flushing = false;
  /** Reads that may have read the table before a flush committed: flushed overlay entries stay until they end. */
  #reading = 0;
  #prune: Map<number, RoomBump> | undefined;
  #tableGeneration = 0;

  constructor(private readonly db: Kysely<Database>) {}

  /** Makes the index cover every event up to `pos` (a position at or below the stream's current). */
  async ensure(pos: number): Promise<void> {
    while (this.#caught < pos) {
      this.#flight ??= this.#catchUp(pos).finally(() => {
        this.#flight = undefined;
      });
      await this.#flight;
    }
  }

  /**
   * Runs `read` (which reads the table) and returns its result with the overlay to apply over its rows (taken after
   * the read, so no flush in between can lose an entry; a prune replaces the map, never changes the one returned).
   */
  async read<T>(read: () => Promise<T>): Promise<{ result: T; overlay: ReadonlyMap<number, RoomBump> }> {
    this.#reading++;
    try {
      const result = await read();
      return { result, overlay: this.#overlay };
    } finally {
      this.#reading--;
      if (this.#reading === 0 && this.#prune) this.#applyPrune();
    }
  }

  async #catchUp(pos: number): Promise<void> {
    if (this.#persisted === undefined) {
      const row = await this.db
        .selectFrom('sliding_sync_bump_mark')
        .select('stream')
        .where('id', '=', 1)
        .executeTakeFirst();
      this.#persisted = row ? Number(row.stream) : 0;
      if (!row) await this.db.insertInto('sliding_sync_bump_mark').values({ id: 1, stream: 0 }).execute();
      this.#caught = Math.max(this.#caught, this.#persisted);
      if (this.#caught >= pos) return;
    }
    const from = this.#caught;
    const rows = await this.db
      .selectFrom('events')
      .select((eb) => [
        'room_nid',
        eb.fn.max('stream_ordering').as('last'),
        eb.fn
          .max(
            sql<
              number | null
            >`CASE WHEN outlier = 0 AND rejected_reason IS NULL AND soft_failed = 0 AND type IN (${sql.join(
              BUMP_EVENT_TYPES.map((t) => sql.lit(t)),
            )}) THEN stream_ordering END`,
          )
          .as('bump'),
      ])
      .where('stream_ordering', '>', from)
      .where('stream_ordering', '<=', pos)
      .groupBy('room_nid')
      .execute();
    for (const r of rows) {
      const nid = Number(r.room_nid);
      const had = this.#overlay.get(nid);
      const next = {
        bump: maxOf(had?.bump ?? null, num(r.bump)),
        last: maxOf(had?.last ?? null, num(r.last)),
      };
      this.#overlay.set(nid, next);
    }
    this.#caught = Math.max(this.#caught, pos);
    if (this.#overlay.size >= FLUSH_ROOMS || this.#caught - (this.#persisted ?? 0) >= FLUSH_POSITIONS)
      this.flush();
  }

  /**
   * Moves when a write to the table starts and when it ends: a read of the table remembered under one generation
   * (storage/sliding-sync.ts) is the table as it still is while the generation is the same.
   */
  get tableGeneration(): number {
    return this.#tableGeneration;
  }

  /** Writes the overlay to the table in the background (one at a time; a failure leaves it for the next). */
  flush(): Promise<void> {
    if (this.#flushing || this.#persisted === undefined) return Promise.resolve();
    this.#flushing = true;
    this.#tableGeneration++;
    const at = this.#caught;
    const snapshot = new Map(this.#overlay);
    return this.#write(snapshot, at)
      .then(
        () => {
          this.#persisted = at;
          this.#prune = snapshot;
          if (this.#reading === 0) this.#applyPrune();
        },
        () => {
          // Kept in the overlay; the next catch-up tries again.
        },
      )
      .finally(() => {
        this.#tableGeneration++;
        this.#flushing = false;
      });
  }

  #applyPrune(): void {
    const done = this.#prune;
    this.#prune = undefined;
    if (!done) return;
    // A new map: a reader may still be applying the old one to table rows read before the flush committed.
    // An entry changed since the snapshot is newer than the table: it stays.
    const next = new Map(this.#overlay);
    for (const [nid, v] of done) if (next.get(nid) === v) next.delete(nid);
    this.#overlay = next;
  }

  async #write(entries: Map<number, RoomBump>, at: number): Promise<void> {
    const list = [...entries];
    await this.db.transaction().execute(async (trx) => {
      for (let i = 0; i < list.length; i += FLUSH_CHUNK) {
        const values = list.slice(i, i + FLUSH_CHUNK).map(([room_nid, v]) => ({ room_nid, ...v }));
        await trx
          .insertInto('sliding_sync_room_bumps')
          .values(values)
          .onConflict((oc) =>
            oc.column('room_nid').doUpdateSet({
              bump: sql`CASE WHEN sliding_sync_room_bumps.bump IS NULL OR excluded.bump > sliding_sync_room_bumps.bump THEN excluded.bump ELSE sliding_sync_room_bumps.bump END`,
              last: sql`CASE WHEN sliding_sync_room_bumps.last IS NULL OR excluded.last > sliding_sync_room_bumps.last THEN excluded.last ELSE sliding_sync_room_bumps.last END`,
            }),
          )
          .execute();
      }
      await trx
        .updateTable('sliding_sync_bump_mark')
        .set({ stream: at })
        .where('id', '=', 1)
        .where('stream', '<', at)
        .execute();
    });
  }
}

const indexes = new WeakMap<Kysely<Database>, BumpIndex>();

/** The bump index of a database (one per Kysely instance, i.e. per open Storage). */
export function bumpIndexFor(db: Kysely<Database>): BumpIndex {
  let idx = indexes.get(db);
  if (!idx) indexes.set(db, (idx = new BumpIndex(db)));
  return idx;
}
