/** Stored sync filters; ids are per user and increase. */
import { isUniqueViolation } from './dialect.js';
import type { Executor } from './users.js';

export async function insertFilter(db: Executor, userId: string, json: string): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const row = await db
      .selectFrom('filters')
      .select((eb) => eb.fn.max('filter_id').as('m'))
      .where('user_id', '=', userId)
      .executeTakeFirst();
    const id = Number(row?.m ?? -1) + 1;
    try {
      await db.insertInto('filters').values({ user_id: userId, filter_id: id, filter_json: json }).execute();
      return id;
    } catch (err) {
      if (!isUniqueViolation(err) || attempt > 5) throw err;
    }
  }
}

export async function getFilter(db: Executor, userId: string, filterId: number): Promise<string | undefined> {
  const row = await db
    .selectFrom('filters')
    .select('filter_json')
    .where('user_id', '=', userId)
    .where('filter_id', '=', filterId)
    .executeTakeFirst();
  return row?.filter_json;
}
