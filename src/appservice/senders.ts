/** Each application service's sender user exists (Synapse creates it lazily; Hearth at start). */
import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../storage/dialect.js';
import type { Database } from '../storage/schema.js';
import { getUser, insertUser } from '../storage/users.js';
import type { AppServiceRegistry } from './registration.js';

export async function ensureAppServiceSenders(
  db: Kysely<Database>,
  registry: AppServiceRegistry,
): Promise<void> {
  for (const as of registry.all()) {
    if (await getUser(db, as.senderUserId)) continue;
    try {
      await insertUser(db, {
        user_id: as.senderUserId,
        password_hash: null,
        is_admin: 0,
        is_guest: 0,
        deactivated: 0,
        locked: 0,
        created_ts: Date.now(),
        displayname: as.senderLocalpart,
        avatar_url: null,
        user_type: null,
      });
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
    }
  }
}
