/**
 * Custom profile fields (Matrix v1.16): every key but `displayname` and `avatar_url` (columns of `users`), one row per
 * user and key with the value as JSON text. A row whose JSON does not parse is skipped and reported to `damage`.
 */

export type DamageSinkFn = (rec: DamageRecord) => void;
import type { DamageRecord } from '../integrity/damage.js';
import type { Executor } from './users.js';

export async function profileFields(
  db: Executor,
  userId: string,
  damage?: DamageSinkFn,
): Promise<Record<string, unknown>> {
  const rows = await db
    .selectFrom('profile_fields')
    .select(['field', 'value_json'])
    .where('user_id', '=', userId)
    .orderBy('field')
    .execute();
  const out: Record<string, unknown> = {};
  for (const r of rows) {
    const value = parseValue(r.value_json, userId, r.field, damage);
    if (value !== undefined) out[r.field] = value.v;
  }
  return out;
}

/** The value of one field (`{ v }`, since null is a value), or undefined when the user has no such field. */
export async function profileField(
  db: Executor,
  userId: string,
  field: string,
  damage?: DamageSinkFn,
): Promise<{ v: unknown } | undefined> {
  const row = await db
    .selectFrom('profile_fields')
    .select('value_json')
    .where('user_id', '=', userId)
    .where('field', '=', field)
    .executeTakeFirst();
  return row && parseValue(row.value_json, userId, field, damage);
}

export async function setProfileFieldValue(
  db: Executor,
  userId: string,
  field: string,
  value: unknown,
): Promise<void> {
  const value_json = JSON.stringify(value);
  await db
    .insertInto('profile_fields')
    .values({ user_id: userId, field, value_json })
    .onConflict((oc) => oc.columns(['user_id', 'field']).doUpdateSet({ value_json }))
    .execute();
}

export async function deleteProfileField(db: Executor, userId: string, field: string): Promise<void> {
  await db.deleteFrom('profile_fields').where('user_id', '=', userId).where('field', '=', field).execute();
}

function parseValue(
  json: string,
  userId: string,
  field: string,
  damage: DamageSinkFn | undefined,
): { v: unknown } | undefined {
  try {
    return { v: JSON.parse(json) as unknown };
  } catch {
    damage?.({ kind: 'profile_field_unparsable', detail: `profile field ${field} of ${userId} is not JSON` });
    return undefined;
  }
}
