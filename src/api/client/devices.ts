/** Device management (client-server API "Device management"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { removeDevices } from '../../accounts/devices.js';
import { getDevice, listDevices, setDeviceDisplayName, upsertDevice } from '../../storage/devices.js';
import type { DeviceRow } from '../../storage/schema.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { notFound } from '../errors.js';
import { parseBody } from '../validate.js';

const PutDeviceBody = z.looseObject({ display_name: z.string().max(512).optional() });
const DeleteDevicesBody = z.looseObject({ devices: z.array(z.string()), auth: z.unknown().optional() });
const DeleteDeviceBody = z.looseObject({ auth: z.unknown().optional() });

function deviceJson(d: DeviceRow): Record<string, unknown> {
  return {
    device_id: d.device_id,
    display_name: d.display_name ?? undefined,
    last_seen_ip: d.last_seen_ip ?? undefined,
    last_seen_ts: d.last_seen_ts ?? undefined,
  };
}

export function deviceRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { storage, auth, uia } = deps;
  const guard = { preHandler: auth.requireUser };

  /** GET /_matrix/client/v3/devices */
  app.get('/_matrix/client/v3/devices', guard, async (req) => {
    const r = requester(req);
    return { devices: (await listDevices(storage.db, r.userId)).map(deviceJson) };
  });

  /** GET /_matrix/client/v3/devices/{deviceId} */
  app.get<{ Params: { deviceId: string } }>('/_matrix/client/v3/devices/:deviceId', guard, async (req) => {
    const r = requester(req);
    const d = await getDevice(storage.db, r.userId, req.params.deviceId);
    if (!d) throw notFound('Unknown device');
    return deviceJson(d);
  });

  /** PUT /_matrix/client/v3/devices/{deviceId} */
  app.put<{ Params: { deviceId: string } }>(
    '/_matrix/client/v3/devices/:deviceId',
    guard,
    async (req, reply) => {
      const r = requester(req);
      const body = parseBody(PutDeviceBody, req.body);
      const d = await getDevice(storage.db, r.userId, req.params.deviceId);
      // Application services create devices for their users this way (spec v1.17, MSC4190): 201.
      if (!d && r.appServiceId !== undefined && req.params.deviceId.length <= 255) {
        await upsertDevice(storage.db, r.userId, req.params.deviceId, body.display_name ?? null, Date.now());
        return reply.code(201).send({});
      }
      if (!d) throw notFound('Unknown device');
      if (body.display_name !== undefined)
        await setDeviceDisplayName(storage.db, r.userId, d.device_id, body.display_name);
      return {};
    },
  );

  /** DELETE /_matrix/client/v3/devices/{deviceId} */
  app.delete<{ Params: { deviceId: string } }>('/_matrix/client/v3/devices/:deviceId', guard, async (req) => {
    const r = requester(req);
    const body = parseBody(DeleteDeviceBody, req.body);
    const d = await getDevice(storage.db, r.userId, req.params.deviceId);
    if (!d) throw notFound('Unknown device');
    // No user-interactive auth for an application service (spec v1.17).
    if (r.appServiceId === undefined)
      await uia.require({ req, auth: body.auth, flows: [['m.login.password']], userId: r.userId });
    await removeDevices(deps, r.userId, [d.device_id]);
    return {};
  });

  /** POST /_matrix/client/v3/delete_devices */
  app.post('/_matrix/client/v3/delete_devices', guard, async (req) => {
    const r = requester(req);
    const body = parseBody(DeleteDevicesBody, req.body);
    if (r.appServiceId === undefined)
      await uia.require({ req, auth: body.auth, flows: [['m.login.password']], userId: r.userId });
    await removeDevices(deps, r.userId, body.devices);
    return {};
  });
}
