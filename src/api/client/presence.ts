/**
 * Presence (client-server API "Presence"). Local users only; no idle timer yet: a user stays `online` until a
 * client says otherwise, while `currently_active` lapses a minute after the last activity.
 * With `presence.enabled: false` nothing is stored or delivered: PUT is accepted and GET answers offline, as Synapse.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { isValidUserId } from '../../rooms/identifiers.js';
import { LruCache } from '../../cache/lru.js';
import type { Config } from '../../config/schema.js';
import type { Storage } from '../../storage/db.js';
import {
  getPresence,
  putPresence,
  shareARoom,
  usersSharingRoomWith,
  type PresenceRow,
  type PresenceState,
} from '../../storage/presence.js';
import { CURRENTLY_ACTIVE_MS, presenceContent } from '../../sync/ephemeral.js';
import type { Notifier } from '../../sync/notifier.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { forbidden, invalidParam } from '../errors.js';
import { parseBody, parseParams } from '../validate.js';

type Deps = { config: Pick<Config, 'presence'>; storage: Pick<Storage, 'db' | 'stream'>; notifier: Notifier };

const Params = z.object({ userId: z.string() });
const Body = z.strictObject({
  presence: z.string().pipe(z.enum(['online', 'offline', 'unavailable'])),
  status_msg: z.string().nullable().optional(),
});

/**
 * The stored presence of local users, remembered per storage so that a client syncing in a loop costs no read:
 * filled by reads and by writes once they are committed (every presence write goes through `writePresence`), a read
 * that overlapped a write is not remembered, bounded.
 */
interface PresenceMemo {
  rows: LruCache<string, PresenceRow>;
  writes: number;
}
const memos = new WeakMap<object, PresenceMemo>();

function memoOf(deps: Deps): PresenceMemo {
  let memo = memos.get(deps.storage);
  if (!memo) {
    memo = { rows: new LruCache('presence_rows', 50_000), writes: 0 };
    memos.set(deps.storage, memo);
  }
  return memo;
}

async function currentPresence(deps: Deps, userId: string): Promise<PresenceRow | undefined> {
  const memo = memoOf(deps);
  const known = memo.rows.get(userId);
  if (known) return known;
  const writes = memo.writes;
  const row = await getPresence(deps.storage.db, userId);
  if (row && memo.writes === writes) memo.rows.set(userId, row);
  return row;
}

/** Stores a presence row with a fresh stream position and wakes everyone who shares a room with the user. */
async function writePresence(deps: Deps, row: PresenceRow): Promise<void> {
  const { db, stream } = deps.storage;
  const memo = memoOf(deps);
  memo.writes++;
  memo.rows.delete(row.userId);
  await stream.withPosition((pos) => putPresence(db, row, pos));
  memo.writes++;
  memo.rows.set(row.userId, row);
  const audience = await usersSharingRoomWith(db, row.userId);
  deps.notifier.notifyUsers([row.userId, ...audience]);
}

/**
 * Sets presence from a client (PUT /presence). Going online bumps the last active time; the status message is
 * replaced (cleared when absent), as Synapse.
 */
export async function setPresence(
  deps: Deps,
  userId: string,
  state: PresenceState,
  statusMsg: string | null,
  now: number = Date.now(),
): Promise<void> {
  if (!deps.config.presence.enabled) return;
  const current = await currentPresence(deps, userId);
  const online = state === 'online';
  await writePresence(deps, {
    userId,
    state,
    statusMsg,
    lastActiveTs: online ? now : (current?.lastActiveTs ?? 0),
    currentlyActive: online,
  });
}

/**
 * /sync's `set_presence`. `offline` leaves presence alone (the client only asks not to be marked online). Writes
 * only when the state changes, or when an online user's last activity is over a minute old, so that a client
 * syncing in a loop costs no read (remembered rows) and one write per minute. The status message is kept.
 */
export async function setPresenceFromSync(
  deps: Deps,
  userId: string,
  state: PresenceState,
  now: number = Date.now(),
): Promise<void> {
  if (!deps.config.presence.enabled || state === 'offline') return;
  const current = await currentPresence(deps, userId);
  const online = state === 'online';
  if (current?.state === state && (!online || now - current.lastActiveTs < CURRENTLY_ACTIVE_MS)) return;
  await writePresence(deps, {
    userId,
    state,
    statusMsg: current?.statusMsg ?? null,
    lastActiveTs: online ? now : (current?.lastActiveTs ?? 0),
    currentlyActive: online,
  });
}

export function presenceRoutes(
  app: FastifyInstance,
  deps: Pick<ApiDeps, 'config' | 'storage' | 'auth' | 'notifier'>,
): void {
  const guard = { preHandler: deps.auth.requireUser };

  /** PUT /_matrix/client/v3/presence/{userId}/status */
  app.put('/_matrix/client/v3/presence/:userId/status', guard, async (req) => {
    const { userId } = parseParams(Params, req.params);
    if (userId !== requester(req).userId) throw forbidden('Can only set your own presence state');
    const body = parseBody(Body, req.body);
    await setPresence(deps, userId, body.presence, body.status_msg ?? null);
    return {};
  });

  /** GET /_matrix/client/v3/presence/{userId}/status */
  app.get('/_matrix/client/v3/presence/:userId/status', guard, async (req) => {
    const { userId } = parseParams(Params, req.params);
    if (!deps.config.presence.enabled) return { presence: 'offline' };
    if (!isValidUserId(userId)) throw invalidParam(`Invalid user id: ${userId}`);
    const me = requester(req).userId;
    if (userId !== me && !(await shareARoom(deps.storage.db, me, userId))) {
      throw forbidden('You are not allowed to see their presence.');
    }
    const row = await getPresence(deps.storage.db, userId);
    return row ? presenceContent(row) : { presence: 'offline' };
  });
}
