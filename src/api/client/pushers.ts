/**
 * Pushers (client-server API "Push notifications": GET /pushers, POST /pushers/set). A pusher belongs to the
 * device that set it and goes with it (foreign key with cascade). Only `http` pushers are supported, as Synapse
 * without email notifications configured.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiDeps } from '../context.js';
import { requester } from '../auth.js';
import { invalidParam, missingParam } from '../errors.js';
import { isJsonObject, parseBody } from '../validate.js';

export const PUSH_NOTIFY_PATH = '/_matrix/push/v1/notify';

const SetBody = z.looseObject({
  kind: z.union([z.string(), z.null()]),
  app_id: z.string(),
  pushkey: z.string(),
  app_display_name: z.string().optional(),
  device_display_name: z.string().optional(),
  profile_tag: z.string().optional(),
  lang: z.string().optional(),
  data: z.unknown().optional(),
  append: z.boolean().optional(),
});

/** The pusher's `data` with `url` checked (http pushers). */
function checkedData(kind: string, data: unknown): Record<string, unknown> {
  if (!isJsonObject(data)) throw invalidParam('data must be an object');
  if (kind !== 'http') return data;
  if (data.url === undefined) throw missingParam("Missing parameter: data.url (required for 'http' pushers)");
  if (typeof data.url !== 'string') throw invalidParam("'url' must be a string");
  let url: URL;
  try {
    url = new URL(data.url);
  } catch {
    throw invalidParam("'url' must be an absolute URL");
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidParam("'url' must be http(s)");
  if (url.pathname !== PUSH_NOTIFY_PATH)
    throw invalidParam(`'url' must have a path of '${PUSH_NOTIFY_PATH}'`);
  return data;
}

export function pushersRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'storage' | 'auth'>): void {
  const guard = { preHandler: deps.auth.requireUser };
  const { db } = deps.storage;

  /** GET /_matrix/client/v3/pushers */
  app.get('/_matrix/client/v3/pushers', guard, async (req) => {
    const rows = await db
      .selectFrom('pushers')
      .selectAll()
      .where('user_id', '=', requester(req).userId)
      .orderBy('id')
      .execute();
    return {
      pushers: rows.map((r) => {
        let data: unknown = {};
        try {
          data = JSON.parse(r.data);
        } catch {
          // Stored by this module: never unparsable, but never a 500 either.
        }
        return {
          pushkey: r.pushkey,
          kind: r.kind,
          app_id: r.app_id,
          app_display_name: r.app_display_name,
          device_display_name: r.device_display_name,
          ...(r.profile_tag !== null ? { profile_tag: r.profile_tag } : {}),
          lang: r.lang,
          data,
        };
      }),
    };
  });

  /** POST /_matrix/client/v3/pushers/set */
  app.post('/_matrix/client/v3/pushers/set', guard, async (req) => {
    const raw = isJsonObject(req.body) ? req.body : {};
    const missingTop = ['kind', 'app_id', 'pushkey'].filter((k) => !(k in raw));
    if (missingTop.length) throw missingParam(`Missing parameters: ${missingTop.join(', ')}`);
    const body = parseBody(SetBody, req.body);
    const { userId, deviceId } = requester(req);
    if (body.kind === null) {
      await db
        .deleteFrom('pushers')
        .where('user_id', '=', userId)
        .where('app_id', '=', body.app_id)
        .where('pushkey', '=', body.pushkey)
        .execute();
      return {};
    }
    const missing = (['app_display_name', 'device_display_name', 'lang', 'data'] as const).filter(
      (k) => body[k] === undefined,
    );
    if (missing.length) throw missingParam(`Missing parameters: ${missing.join(', ')}`);
    if (body.kind !== 'http') throw invalidParam(`Unsupported pusher kind: ${body.kind}`);
    if (body.app_id.length > 64) throw invalidParam('app_id is longer than 64 characters');
    if (Buffer.byteLength(body.pushkey) > 512) throw invalidParam('pushkey is longer than 512 bytes');
    const data = checkedData(body.kind, body.data);
    const row = {
      user_id: userId,
      device_id: deviceId,
      app_id: body.app_id,
      pushkey: body.pushkey,
      kind: body.kind,
      app_display_name: body.app_display_name as string,
      device_display_name: body.device_display_name as string,
      profile_tag: body.profile_tag ?? null,
      lang: body.lang as string,
      data: JSON.stringify(data),
      created_ts: Date.now(),
    };
    await db.transaction().execute(async (trx) => {
      if (body.append !== true) {
        await trx
          .deleteFrom('pushers')
          .where('app_id', '=', body.app_id)
          .where('pushkey', '=', body.pushkey)
          .where('user_id', '!=', userId)
          .execute();
      }
      await trx
        .insertInto('pushers')
        .values(row)
        .onConflict((oc) =>
          oc.columns(['user_id', 'app_id', 'pushkey']).doUpdateSet({
            device_id: row.device_id,
            kind: row.kind,
            app_display_name: row.app_display_name,
            device_display_name: row.device_display_name,
            profile_tag: row.profile_tag,
            lang: row.lang,
            data: row.data,
          }),
        )
        .execute();
    });
    return {};
  });
}
