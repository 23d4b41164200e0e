/**
 * Group commit for the room writer's sends. Sends that arrive while a transaction is being written wait in
 * per-room batches; when a transaction is free it takes every ready batch, of any room, and commits them in ONE
 * transaction (one fsync for many events). SQLite writes one group at a time; PostgreSQL a few at once. A batch
 * becomes ready only when it holds its room's turn in the room's write queue, so it is ordered with the room's other
 * writes (createRoom, ingestRemote, repairs...) and with the room's earlier batches; it keeps the turn until its
 * group has committed or failed.
 */
import type { KeyedQueue } from '../util/keyed-queue.js';

/** One send waiting for its commit. `settle` answers it; the batch's jobs are kept in arrival order. */
export interface GroupJob<In, Out> {
  input: In;
  resolve(value: Out): void;
  reject(err: unknown): void;
}

export interface RoomBatch<In, Out> {
  roomId: string;
  jobs: GroupJob<In, Out>[];
}

interface Pending<In, Out> extends RoomBatch<In, Out> {
  /** Gives the room's turn back (set once the batch holds it). */
  release?: () => void;
}

export class GroupCommitter<In, Out> {
  /** Per room, the batch still taking sends (not yet picked for a transaction). */
  #open = new Map<string, Pending<In, Out>>();
  /** Batches holding their room's turn, waiting for the next transaction. */
  #ready: Pending<In, Out>[] = [];
  #scheduled = false;
  #inFlight = 0;

  /**
   * @param commitGroup writes the batches in one transaction (retrying without failed events) and answers every
   *   job; a job it leaves unanswered is failed with the error it throws, or with a generic one.
   * @param parallel how many groups (of different rooms) may be written at once: 1 for SQLite (one connection),
   *   a few for PostgreSQL, whose connections commit in parallel.
   */
  constructor(
    private readonly queue: KeyedQueue,
    private readonly commitGroup: (batches: RoomBatch<In, Out>[]) => Promise<void>,
    private readonly parallel = 1,
  ) {}

  submit(roomId: string, input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      let batch = this.#open.get(roomId);
      if (!batch) {
        const b: Pending<In, Out> = { roomId, jobs: [] };
        batch = b;
        this.#open.set(roomId, b);
        void this.queue.run(
          roomId,
          () =>
            new Promise<void>((release) => {
              b.release = release;
              this.#ready.push(b);
              this.#kick();
            }),
        );
      }
      batch.jobs.push({ input, resolve, reject });
    });
  }

  #kick(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate: requests read in this turn of the event loop join the group before it starts.
    setImmediate(() => {
      this.#scheduled = false;
      this.#startGroups();
    });
  }

  #startGroups(): void {
    while (this.#ready.length > 0 && this.#inFlight < this.parallel) {
      const batches = this.#ready.splice(0);
      for (const b of batches) if (this.#open.get(b.roomId) === b) this.#open.delete(b.roomId);
      this.#inFlight++;
      void this.#run(batches).finally(() => {
        this.#inFlight--;
        // The rooms' next batches take their turns (and requests arrive) before the next group starts.
        this.#kick();
      });
    }
  }

  async #run(batches: Pending<In, Out>[]): Promise<void> {
    const answered = new Set<GroupJob<In, Out>>();
    const tracked = batches.map((b) => ({
      roomId: b.roomId,
      jobs: b.jobs.map((j) => ({
        input: j.input,
        resolve: (v: Out) => {
          answered.add(j);
          j.resolve(v);
        },
        reject: (e: unknown) => {
          answered.add(j);
          j.reject(e);
        },
      })),
    }));
    let failure: unknown = new Error('the group commit left a send unanswered');
    try {
      await this.commitGroup(tracked);
    } catch (err) {
      failure = err;
    }
    for (const b of batches) {
      for (const j of b.jobs) if (!answered.has(j)) j.reject(failure);
      b.release?.();
    }
  }
}
