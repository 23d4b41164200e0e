/** Creating accounts, shared by HTTP registration, shared-secret registration and `hearth register-user`. */
import { randomInt } from 'node:crypto';
import type { Kysely } from 'kysely';
import { MatrixError } from '../api/errors.js';
import { isUniqueViolation } from '../storage/dialect.js';
import type { Database } from '../storage/schema.js';
import { getUser, insertUser } from '../storage/users.js';
import { hashPassword } from './secrets.js';

/** The localpart grammar of the spec's appendix (user identifiers), as new registrations must follow it. */
const LOCALPART = /^[a-z0-9._=\-/+]+$/;

/** `guest`: the name of a guest account being upgraded, which may be numeric. */
export function validateLocalpart(localpart: string, serverName: string, guest = false): void {
  if (localpart === '') throw new MatrixError('M_INVALID_USERNAME', 'User ID cannot be empty');
  if (!LOCALPART.test(localpart)) {
    throw new MatrixError(
      'M_INVALID_USERNAME',
      'User ID can only contain characters a-z, 0-9, or one of ._=-/+',
    );
  }
  if (Buffer.byteLength(`@${localpart}:${serverName}`) > 255) {
    throw new MatrixError(
      'M_INVALID_USERNAME',
      'User ID is too long (at most 255 bytes with the server name)',
    );
  }
  if (!guest && /^\d+$/.test(localpart)) {
    // Purely numeric localparts are kept for guests, as Synapse does.
    throw new MatrixError('M_INVALID_USERNAME', 'Numeric user IDs are reserved for guest users');
  }
}

export interface NewAccount {
  localpart: string;
  serverName: string;
  password: string | null;
  /** A password already hashed (registration keeps only the hash in its UIA session); wins over `password`. */
  passwordHash?: string | undefined;
  admin?: boolean;
  guest?: boolean;
  userType?: string | null;
  displayname?: string | null;
}

export async function isUserIdAvailable(db: Kysely<Database>, userId: string): Promise<boolean> {
  return (await getUser(db, userId)) === undefined;
}

/** Creates the user row. Throws M_USER_IN_USE when taken, M_INVALID_USERNAME when the name is bad. */
export async function createAccount(db: Kysely<Database>, a: NewAccount): Promise<string> {
  if (!a.guest) validateLocalpart(a.localpart, a.serverName);
  const userId = `@${a.localpart}:${a.serverName}`;
  const passwordHash = a.passwordHash ?? (a.password === null ? null : await hashPassword(a.password));
  try {
    await insertUser(db, {
      user_id: userId,
      password_hash: passwordHash,
      is_admin: a.admin ? 1 : 0,
      is_guest: a.guest ? 1 : 0,
      deactivated: 0,
      locked: 0,
      created_ts: Date.now(),
      displayname: a.displayname ?? a.localpart,
      avatar_url: null,
      user_type: a.userType ?? null,
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new MatrixError('M_USER_IN_USE', 'User ID already taken');
    throw err;
  }
  return userId;
}

/** Guest localparts are numeric, as in Synapse. */
export function guestLocalpart(): string {
  return `${Date.now()}${randomInt(1000, 9999)}`;
}
