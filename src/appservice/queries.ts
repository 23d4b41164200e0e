/**
 * On-demand queries to application services (spec "Querying"): a client touching an unknown room alias or user in
 * an AS namespace makes the homeserver ask that AS (`GET /_matrix/app/v1/rooms/{alias}`, `/users/{userId}`), which
 * may create it before answering 200; the caller then looks again.
 */
import { getUser, type Executor } from '../storage/users.js';
import { appServiceRequest } from './http.js';
import type { AppService, AppServiceRegistry } from './registration.js';

const QUERY_TIMEOUT_MS = 30_000;

export interface QueryLog {
  warn(obj: object, msg: string): void;
}

export class AppServiceQueries {
  constructor(
    private readonly registry: AppServiceRegistry,
    private readonly log?: QueryLog,
  ) {}

  /** Asks the AS(es) whose alias namespace covers `alias`; true when one answered 200 (it made the alias). */
  readonly queryAlias = (alias: string): Promise<boolean> =>
    this.#ask(
      this.registry.all().filter((as) => this.registry.isInterestedInAlias(as, alias)),
      () => `/_matrix/app/v1/rooms/${encodeURIComponent(alias)}`,
    );

  /** Asks the AS(es) whose users namespace covers `userId`; true when one answered 200 (it made the user). */
  readonly queryUser = (userId: string): Promise<boolean> =>
    this.#ask(
      this.registry.all().filter((as) => this.registry.isInterestedInUser(as, userId)),
      () => `/_matrix/app/v1/users/${encodeURIComponent(userId)}`,
    );

  /** Before an invite: a user of this server not known here is asked of its AS (which may create it). */
  async queryUnknownUser(db: Executor, userId: string, serverName: string): Promise<void> {
    if (this.registry.all().length === 0 || !userId.endsWith(`:${serverName}`)) return;
    if (await getUser(db, userId)) return;
    await this.queryUser(userId);
  }

  async #ask(services: AppService[], path: (as: AppService) => string): Promise<boolean> {
    for (const as of services) {
      if (as.url === null) continue;
      try {
        const res = await appServiceRequest(as, {
          method: 'GET',
          path: path(as),
          timeoutMs: QUERY_TIMEOUT_MS,
        });
        if (res.status === 200) return true;
      } catch (err) {
        this.log?.warn({ err, appservice: as.id }, 'application service query failed');
      }
    }
    return false;
  }
}
