/**
 * Third-party networks (client-server API "Third-party networks"), answered from the application services that
 * registered each protocol, as Synapse does: protocol metadata is the first AS's answer with every AS's instances
 * (each given an `instance_id` of `<appservice id>|<network id>`), lookups are the AS answers concatenated.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { appServiceRequest } from '../../appservice/http.js';
import type { AppService, AppServiceRegistry } from '../../appservice/registration.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { isJsonObject } from '../validate.js';

type JsonObject = Record<string, unknown>;
const TIMEOUT_MS = 30_000;

/** The query parameters passed on to the AS: every string field but the access token. */
function fields(req: FastifyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  const query = (req.query ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(query)) {
    if (k === 'access_token') continue;
    const first: unknown = Array.isArray(v) ? (v as unknown[])[0] : v;
    if (typeof first === 'string') out[k] = first;
  }
  return out;
}

async function ask(as: AppService, path: string, query?: Record<string, string>): Promise<unknown> {
  try {
    const res = await appServiceRequest(as, { method: 'GET', path, query, timeoutMs: TIMEOUT_MS });
    return res.status === 200 ? res.body : undefined;
  } catch {
    return undefined;
  }
}

/** Protocol metadata from one AS, its instances given instance ids; undefined when it gave none. */
async function protocolOf(as: AppService, protocol: string): Promise<JsonObject | undefined> {
  const info = await ask(as, `/_matrix/app/v1/thirdparty/protocol/${encodeURIComponent(protocol)}`);
  if (!isJsonObject(info)) return undefined;
  const instances = Array.isArray(info.instances) ? info.instances.filter(isJsonObject) : [];
  return {
    ...info,
    instances: instances.map((i) =>
      typeof i.network_id === 'string' ? { ...i, instance_id: `${as.id}|${i.network_id}` } : i,
    ),
  };
}

async function protocols(registry: AppServiceRegistry, only?: string): Promise<Record<string, JsonObject>> {
  const found = new Map<string, JsonObject[]>();
  await Promise.all(
    registry.all().flatMap((as) =>
      as.protocols
        .filter((p) => only === undefined || p === only)
        .map(async (p) => {
          const info = await protocolOf(as, p);
          if (info) found.set(p, [...(found.get(p) ?? []), info]);
        }),
    ),
  );
  const out: Record<string, JsonObject> = {};
  for (const [p, infos] of found) {
    out[p] = { ...infos[0], instances: infos.flatMap((i) => i.instances as unknown[]) };
  }
  return out;
}

/** The lookup answers of `services`, concatenated (answers that are not lists of objects are dropped). */
async function lookup(services: readonly AppService[], path: string, query: Record<string, string>) {
  const answers = await Promise.all(services.map((as) => ask(as, path, query)));
  return answers.flatMap((a) => (Array.isArray(a) ? a.filter(isJsonObject) : []));
}

export function thirdPartyRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };
  const registry = (): AppServiceRegistry | undefined => deps.appServices;
  const servicesFor = (protocol: string): AppService[] =>
    registry()
      ?.all()
      .filter((as) => as.protocols.includes(protocol)) ?? [];

  /** GET /_matrix/client/v3/thirdparty/protocols */
  app.get('/_matrix/client/v3/thirdparty/protocols', guard, async () => {
    const r = registry();
    return r ? protocols(r) : {};
  });

  /** GET /_matrix/client/v3/thirdparty/protocol/{protocol} */
  app.get<{ Params: { protocol: string } }>(
    '/_matrix/client/v3/thirdparty/protocol/:protocol',
    guard,
    async (req) => {
      const r = registry();
      const info = r ? (await protocols(r, req.params.protocol))[req.params.protocol] : undefined;
      if (!info) throw new MatrixError('M_NOT_FOUND', 'The protocol is unknown');
      return info;
    },
  );

  for (const kind of ['location', 'user'] as const) {
    /** GET /_matrix/client/v3/thirdparty/{location,user}/{protocol} */
    app.get<{ Params: { protocol: string } }>(
      `/_matrix/client/v3/thirdparty/${kind}/:protocol`,
      guard,
      async (req) => {
        const { protocol } = req.params;
        const services = servicesFor(protocol);
        if (services.length === 0) throw new MatrixError('M_NOT_FOUND', 'The protocol is unknown');
        return lookup(
          services,
          `/_matrix/app/v1/thirdparty/${kind}/${encodeURIComponent(protocol)}`,
          fields(req),
        );
      },
    );

    /** GET /_matrix/client/v3/thirdparty/location?alias= and /thirdparty/user?userid= */
    app.get(`/_matrix/client/v3/thirdparty/${kind}`, guard, async (req) => {
      const query = fields(req);
      const key = kind === 'location' ? 'alias' : 'userid';
      if (query[key] === undefined) throw new MatrixError('M_MISSING_PARAM', `Missing parameter: ${key}`);
      const services =
        registry()
          ?.all()
          .filter((as) => as.protocols.length > 0) ?? [];
      return lookup(services, `/_matrix/app/v1/thirdparty/${kind}`, { [key]: query[key] });
    });
  }
}
