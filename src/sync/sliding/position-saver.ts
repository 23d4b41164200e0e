/**
 * Group commit of sliding sync positions: the responses of many connections that finish while a save is being
 * committed (a message wakes every long-poll of its room at once) are saved together in the next transaction, so
 * they share one commit instead of queueing behind one fsync each. A batch that fails (one connection was reset
 * meanwhile) is saved again one by one, so only that position is lost.
 *
 * Position ids are handed out here (above the highest stored at first use), so an answer is sent without waiting
 * for its commit: a request naming a position still being saved waits for that save (`saved`), and a position
 * whose save failed, or was lost in a crash, is simply unknown (M_UNKNOWN_POS: the client starts afresh).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.js';
import {
  maxPositionNid,
  savePosition,
  savePositions,
  type NewPosition,
} from '../../storage/sliding-sync-connections.js';

interface Pending {
  position: NewPosition;
  resolve: (posNid: number) => void;
  reject: (err: unknown) => void;
}

export class PositionSaver {
  #queue: Pending[] = [];
  #draining = false;
  #next: number | undefined;
  #loading: Promise<number> | undefined;
  /** Saves not finished yet, by position id (settled: true saved, false failed). */
  readonly #pending = new Map<number, Promise<boolean>>();

  /**
   * @param quiet resolves when no response is being computed (or after a bound): a save's commit holds the database
   * (SQLite's one connection during its fsync), so it waits for the answers woken with it instead of delaying them.
   */
  constructor(
    private readonly db: Kysely<Database>,
    private readonly quiet: () => Promise<void> = () => Promise.resolve(),
  ) {}

  /** A new position id (never handed out before by this process, above every stored one). */
  async allocate(): Promise<number> {
    if (this.#next === undefined) {
      this.#loading ??= maxPositionNid(this.db);
      const max = await this.#loading;
      this.#next ??= max + 1;
    }
    return this.#next++;
  }

  /** Waits until the save of `posNid`, if one is under way, has finished (failed or not). */
  async saved(posNid: number): Promise<void> {
    await this.#pending.get(posNid);
  }

  /** Waits until every save handed in so far has finished. */
  async drain(): Promise<void> {
    await Promise.all([...this.#pending.values()]);
  }

  /** Saves a position (its id from `allocate`) in the background; failures leave it unknown. */
  saveLater(position: NewPosition): void {
    const done = this.save(position).then(
      () => true,
      () => false,
    );
    this.#pending.set(position.posNid, done);
    void done.then(() => this.#pending.delete(position.posNid));
  }

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
      await this.quiet();
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
