/** Cross-signing (client-server API "End-to-End Encryption > Cross-signing"). */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { replacesKeys, uploadSignatures, uploadSigningKeys } from '../../e2ee/cross-signing.js';
import type { JsonObject } from '../../rooms/event.js';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { parseBody } from '../validate.js';

const JsonObj = z.record(z.string(), z.unknown());
const SigningBody = z.looseObject({
  master_key: JsonObj.optional(),
  self_signing_key: JsonObj.optional(),
  user_signing_key: JsonObj.optional(),
  auth: z.unknown().optional(),
});
const SignaturesBody = z.record(z.string(), z.unknown());

export function crossSigningRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const guard = { preHandler: deps.auth.requireUser };

  /**
   * POST /_matrix/client/v3/keys/device_signing/upload. As in Synapse (MSC3967): the first upload needs no UIA;
   * replacing a stored key with a different one needs the password; re-uploading the same keys is a no-op.
   */
  app.post('/_matrix/client/v3/keys/device_signing/upload', guard, async (req) => {
    const r = requester(req);
    const body = parseBody(SigningBody, req.body);
    const keys = {
      master_key: body.master_key as JsonObject | undefined,
      self_signing_key: body.self_signing_key as JsonObject | undefined,
      user_signing_key: body.user_signing_key as JsonObject | undefined,
    };
    if (await replacesKeys(deps, r.userId, keys)) {
      await deps.uia.require({ req, auth: body.auth, flows: [['m.login.password']], userId: r.userId });
    }
    await uploadSigningKeys(deps, r.userId, keys);
    return {};
  });

  /** POST /_matrix/client/v3/keys/signatures/upload */
  app.post('/_matrix/client/v3/keys/signatures/upload', guard, async (req) => {
    const body = parseBody(SignaturesBody, req.body);
    return uploadSignatures(deps, requester(req).userId, body);
  });
}
