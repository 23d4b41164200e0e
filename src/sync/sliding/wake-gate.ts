/**
 * How many woken long-polls compute their answers at once. A message wakes every connection of its room together;
 * computed side by side, their reads interleave and every answer is ready only when the last is (on SQLite all
 * reads take turns on one connection anyway). Let through a few at a time, in the order they woke, each answer
 * leaves as soon as it is ready, and the later ones find the room's timeline already read (batch.ts).
 */
export class WakeGate {
  #running = 0;
  readonly #queue: (() => void)[] = [];
  readonly #whenIdle: (() => void)[] = [];

  constructor(private readonly concurrency: number) {}

  /** Resolves with the function that gives the slot back (call it exactly once). */
  async acquire(): Promise<() => void> {
    if (this.#running >= this.concurrency) await new Promise<void>((r) => this.#queue.push(r));
    else this.#running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#queue.shift();
      // The slot passes straight to the next in line (#running unchanged).
      if (next) next();
      else if (--this.#running === 0) for (const done of this.#whenIdle.splice(0)) done();
    };
  }

  /** Whether some woken long-poll holds a slot. */
  get busy(): boolean {
    return this.#running > 0;
  }

  /**
   * Resolves once no slot is held, or after `ms`: a long-poll just (re)issued, which most likely parks, lets the
   * woken ones in line answer first (bounded, so a steady stream of wakes cannot hold it back for long).
   */
  idle(ms: number): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#whenIdle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Calls `done` once no slot is held (at once when none is). */
  whenIdle(done: () => void): void {
    if (this.#running === 0) done();
    else this.#whenIdle.push(done);
  }
}
