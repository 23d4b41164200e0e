/**
 * Third-party identifiers (client-server API "Adding Account Administrative Contact Information", and the
 * `requestToken` endpoints of registration and password reset) on a server that sends neither email nor SMS and
 * contacts no identity server. The endpoints exist and validate their bodies as Synapse does (missing field
 * M_MISSING_PARAM, wrong type M_BAD_JSON, bad client_secret M_INVALID_PARAM), then answer the error the spec lists
 * for the endpoint:
 *
 * - `/account/3pid/{email,msisdn}/requestToken`: 400 M_THREEPID_MEDIUM_NOT_SUPPORTED (as Synapse without email
 *   config or msisdn delegate);
 * - `/register/{email,msisdn}/requestToken` and `/account/password/{email,msisdn}/requestToken`: 403
 *   M_THREEPID_DENIED, the spec's "the homeserver does not permit the address" (Synapse answers 400 M_UNKNOWN);
 * - `/account/3pid` (deprecated) and `/account/3pid/add`: no validation session can exist, so M_THREEPID_AUTH_FAILED
 *   (403 for the former as the spec lists it; 400 after user-interactive auth for the latter, as Synapse);
 * - `/account/3pid/bind`: 400 M_SERVER_NOT_TRUSTED, no identity server is contacted;
 * - `/account/3pid/delete` and `/unbind`: nothing is stored, so 200 with `id_server_unbind_result: no-support`.
 *
 * `GET /account/3pid` lives in account.ts and answers `{threepids: []}`.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { requester } from '../auth.js';
import type { ApiDeps } from '../context.js';
import { MatrixError } from '../errors.js';
import { parseBody } from '../validate.js';

/** The spec's client_secret grammar: `[0-9a-zA-Z.=_-]`, 1 to 255 characters (Synapse: 400 M_INVALID_PARAM). */
const CLIENT_SECRET = /^[0-9a-zA-Z.=_-]{1,255}$/;

function checkClientSecret(secret: string): void {
  if (!CLIENT_SECRET.test(secret))
    throw new MatrixError('M_INVALID_PARAM', 'Invalid client_secret parameter');
}

const IdServer = {
  id_server: z.string().optional(),
  id_access_token: z.string().optional(),
};

const EmailRequest = z.looseObject({
  client_secret: z.string(),
  email: z.string(),
  send_attempt: z.number().int(),
  next_link: z.string().optional(),
  ...IdServer,
});

const MsisdnRequest = z.looseObject({
  client_secret: z.string(),
  country: z.string(),
  phone_number: z.string(),
  send_attempt: z.number().int(),
  next_link: z.string().optional(),
  ...IdServer,
});

const ThreepidCreds = z.looseObject({
  client_secret: z.string(),
  sid: z.string(),
  ...IdServer,
});

const AddBody = z.looseObject({
  client_secret: z.string(),
  sid: z.string(),
  auth: z.looseObject({}).optional(),
});

const BindBody = z.looseObject({
  client_secret: z.string(),
  sid: z.string(),
  id_server: z.string(),
  id_access_token: z.string(),
});

const UnbindBody = z.looseObject({
  medium: z.enum(['email', 'msisdn']),
  address: z.string(),
  id_server: z.string().optional(),
});

type Purpose = 'account' | 'register' | 'password';

export function threepidRoutes(app: FastifyInstance, deps: Pick<ApiDeps, 'auth' | 'config' | 'uia'>): void {
  const guard = { preHandler: deps.auth.requireUser };

  function refuse(purpose: Purpose, medium: 'email' | 'msisdn'): never {
    const what = medium === 'email' ? 'Email addresses' : 'Phone numbers';
    if (purpose === 'register' && !deps.config.enable_registration)
      throw new MatrixError('M_FORBIDDEN', 'Registration is disabled on this homeserver');
    if (purpose === 'account') {
      throw new MatrixError(
        'M_THREEPID_MEDIUM_NOT_SUPPORTED',
        `${what} cannot be added to accounts on this homeserver: it does not send ${medium === 'email' ? 'email' : 'SMS'}`,
      );
    }
    throw new MatrixError(
      'M_THREEPID_DENIED',
      `${what} cannot be used ${purpose === 'register' ? 'to register' : 'to reset passwords'} on this homeserver`,
      {},
      403,
    );
  }

  const prefixes: Record<Purpose, string> = {
    account: '/_matrix/client/v3/account/3pid',
    register: '/_matrix/client/v3/register',
    password: '/_matrix/client/v3/account/password',
  };
  for (const [purpose, prefix] of Object.entries(prefixes) as [Purpose, string][]) {
    /** POST …/email/requestToken */
    app.post(`${prefix}/email/requestToken`, async (req) => {
      const body = parseBody(EmailRequest, req.body);
      checkClientSecret(body.client_secret);
      refuse(purpose, 'email');
    });
    /** POST …/msisdn/requestToken */
    app.post(`${prefix}/msisdn/requestToken`, async (req) => {
      const body = parseBody(MsisdnRequest, req.body);
      checkClientSecret(body.client_secret);
      refuse(purpose, 'msisdn');
    });
  }

  /** POST /_matrix/client/v3/account/3pid (deprecated): binds through an identity server. */
  app.post('/_matrix/client/v3/account/3pid', guard, async (req) => {
    const body = parseBody(
      z.looseObject({ three_pid_creds: ThreepidCreds.optional(), threePidCreds: ThreepidCreds.optional() }),
      req.body,
    );
    // `threePidCreds` is the r0 spelling, which Synapse still reads.
    const creds = body.three_pid_creds ?? body.threePidCreds;
    if (creds === undefined) throw new MatrixError('M_MISSING_PARAM', 'Missing parameter: three_pid_creds');
    checkClientSecret(creds.client_secret);
    throw new MatrixError(
      'M_THREEPID_AUTH_FAILED',
      'The credentials could not be verified: this homeserver contacts no identity server',
      {},
      403,
    );
  });

  /** POST /_matrix/client/v3/account/3pid/add */
  app.post('/_matrix/client/v3/account/3pid/add', guard, async (req) => {
    const r = requester(req);
    const body = parseBody(AddBody, req.body);
    checkClientSecret(body.client_secret);
    await deps.uia.require({ req, auth: body.auth, flows: [['m.login.password']], userId: r.userId });
    throw new MatrixError('M_THREEPID_AUTH_FAILED', 'No validated 3pid session found');
  });

  /** POST /_matrix/client/v3/account/3pid/bind */
  app.post('/_matrix/client/v3/account/3pid/bind', guard, async (req) => {
    const body = parseBody(BindBody, req.body);
    checkClientSecret(body.client_secret);
    throw new MatrixError('M_SERVER_NOT_TRUSTED', 'This homeserver does not contact identity servers');
  });

  /** POST /_matrix/client/v3/account/3pid/delete and /unbind: no identifier is ever stored or bound. */
  for (const action of ['delete', 'unbind']) {
    app.post(`/_matrix/client/v3/account/3pid/${action}`, guard, async (req) => {
      parseBody(UnbindBody, req.body);
      return { id_server_unbind_result: 'no-support' };
    });
  }
}
