/** Logging in: a device with an access token (and optionally a refresh token), all in one transaction. */
import type { Kysely } from 'kysely';
import { insertAccessToken, insertRefreshToken, upsertDevice } from '../storage/devices.js';
import type { Database } from '../storage/schema.js';
import { hashToken, newDeviceId, newToken } from './secrets.js';

export interface SessionTokens {
  user_id: string;
  device_id: string;
  access_token: string;
  refresh_token?: string;
  expires_in_ms?: number;
}

export interface SessionOptions {
  userId: string;
  deviceId?: string | undefined;
  displayName?: string | undefined;
  refreshToken: boolean;
  accessTokenLifetimeMs: number | undefined;
  refreshTokenLifetimeMs: number | undefined;
}

/**
 * Creates (or reuses) the device and issues tokens. Logging in again with an existing device id replaces that
 * device's old tokens, as Synapse does.
 */
export async function createSession(db: Kysely<Database>, opts: SessionOptions): Promise<SessionTokens> {
  const deviceId = opts.deviceId ?? newDeviceId();
  const now = Date.now();
  const accessToken = newToken('hat');
  // Access tokens only expire when the client can refresh them.
  const expiresIn = opts.refreshToken ? (opts.accessTokenLifetimeMs ?? 5 * 60_000) : undefined;
  const refreshToken = opts.refreshToken ? newToken('hrt') : undefined;
  await db.transaction().execute(async (trx) => {
    if (opts.deviceId) {
      await trx
        .deleteFrom('access_tokens')
        .where('user_id', '=', opts.userId)
        .where('device_id', '=', deviceId)
        .execute();
      await trx
        .deleteFrom('refresh_tokens')
        .where('user_id', '=', opts.userId)
        .where('device_id', '=', deviceId)
        .execute();
    }
    await upsertDevice(trx, opts.userId, deviceId, opts.displayName ?? null, now);
    let refreshId: number | null = null;
    if (refreshToken) {
      refreshId = await insertRefreshToken(trx, {
        tokenHash: hashToken(refreshToken),
        userId: opts.userId,
        deviceId,
        now,
        expiresTs: opts.refreshTokenLifetimeMs ? now + opts.refreshTokenLifetimeMs : null,
      });
    }
    await insertAccessToken(trx, {
      tokenHash: hashToken(accessToken),
      userId: opts.userId,
      deviceId,
      now,
      expiresTs: expiresIn ? now + expiresIn : null,
      refreshTokenId: refreshId,
    });
  });
  return {
    user_id: opts.userId,
    device_id: deviceId,
    access_token: accessToken,
    ...(refreshToken ? { refresh_token: refreshToken, expires_in_ms: expiresIn } : {}),
  };
}
