/**
 * The global stream position. Every row a sync stream reads (events, account data, receipts, to-device, device
 * lists...) is stamped with a position from this one counter, so a sync token is a single number.
 *
 * Positions are handed out in process before a transaction and marked finished after it commits or rolls back.
 * `current` is the highest position below which every allocated position has finished, so readers never see
 * position N+1 committed while N is still in flight (which would make an incremental sync skip N).
 */
export interface StreamReservation {
  /** Positions up to this one are persisted as reserved. */
  reservedUpTo: number;
  /** How far each renewal reaches beyond the last. */
  block: number;
  /** Persists a new reservation. */
  reserve(upTo: number): Promise<void>;
}

export class StreamPositions {
  #allocated: number;
  #inFlight = new Set<number>();
  #current: number;
  #listeners = new Set<(pos: number) => void>();
  #reservation: StreamReservation | undefined;
  #renewing = false;

  constructor(start: number, reservation?: StreamReservation) {
    this.#allocated = start;
    this.#current = start;
    this.#reservation = reservation;
  }

  /** The highest position whose writes, and all before it, are finished. */
  get current(): number {
    return this.#current;
  }

  /** The highest position handed out so far (finished or not). */
  get allocated(): number {
    return this.#allocated;
  }

  allocate(): number {
    const pos = ++this.#allocated;
    this.#inFlight.add(pos);
    this.#renewReservation(pos);
    return pos;
  }

  /** Renews the persisted reservation when half of it is used, long before positions run past it. */
  #renewReservation(pos: number): void {
    const r = this.#reservation;
    if (!r || this.#renewing || pos < r.reservedUpTo - r.block / 2) return;
    this.#renewing = true;
    const upTo = Math.max(r.reservedUpTo, pos) + r.block;
    r.reserve(upTo)
      .then(() => {
        r.reservedUpTo = upTo;
      })
      .catch(() => undefined)
      .finally(() => {
        this.#renewing = false;
      });
  }

  finish(pos: number): void {
    if (!this.#inFlight.delete(pos)) return;
    let next = this.#allocated;
    for (const p of this.#inFlight) if (p - 1 < next) next = p - 1;
    if (next > this.#current) {
      this.#current = next;
      for (const l of this.#listeners) l(next);
    }
  }

  /** Runs `write` with a fresh position; the position is finished whatever happens. */
  async withPosition<T>(write: (pos: number) => Promise<T>): Promise<T> {
    const pos = this.allocate();
    try {
      return await write(pos);
    } finally {
      this.finish(pos);
    }
  }

  onAdvance(listener: (pos: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
