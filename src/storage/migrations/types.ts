import type { Kysely } from 'kysely';
import type { Engine } from '../dialect.js';

/**
 * A migration is frozen in time: it must not import application code, so it takes an untyped Kysely.
 */
export interface Migration {
  version: number;
  name: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations describe past schemas, not the current typed one
  up(db: Kysely<any>, engine: Engine): Promise<void>;
}
