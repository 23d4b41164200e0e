/**
 * Group commit of sliding sync positions: the responses of many connections that finish while a save is being
 * committed (a message wakes every long-poll of its room at once) are saved together in the next transaction, so
 * they share one commit instead of queueing behind one fsync each. A batch that fails (one connection was reset
 * meanwhile) is saved again one by one, so only that response fails.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.js';
import { savePosition, savePositions, type NewPosition } from '../../storage/sliding-sync-connections.js';

interface Pending {
  position: NewPosition;
  resolve: (posNid: number) => void;
  reject: (err: unknown) => void;
}

export class PositionSaver {
  #queue: Pending[] = [];
  #draining = false;

  constructor(private readonly db: Kysely<Database>) {}

  save(position: NewPosition): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ position, resolve, reject });
      if (!this.#draining) {
        this.#draining = true;
        void this.#drain();
      }
    });
  }

  async #drain(): Promise<void> {
    try {
      // Let the responses that finish in this turn of the event loop join the first batch.
      await new Promise<void>((r) => setImmediate(r));
      while (this.#queue.length) {
        const batch = this.#queue;
        this.#queue = [];
        await this.#commit(batch);
      }
    } catch (err: unknown) {
      // #commit settles every request it took; anything else still queued fails rather than hangs.
      for (const p of this.#queue.splice(0)) p.reject(err);
    } finally {
      this.#draining = false;
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    if (batch.length > 1) {
      const ids = await savePositions(
        this.db,
        batch.map((p) => p.position),
      ).catch(() => undefined);
      if (ids) {
        batch.forEach((p, i) => p.resolve(ids[i] as number));
        return;
      }
    }
    await Promise.all(batch.map((p) => savePosition(this.db, p.position).then(p.resolve, p.reject)));
  }
}
