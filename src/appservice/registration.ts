/**
 * Application service registration files (`app_service_config_files`, Synapse's YAML format), validated at start,
 * and the registry the rest of the server asks "whose namespace is this user / alias / room in?".
 *
 * Namespace regexes are matched as Synapse matches them (Python `re.match`): anchored at the start of the string,
 * not at its end (`@_irc_.*` covers `@_irc_bob:example.org`).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { describeIssues } from '../config/load.js';

export interface Namespace {
  exclusive: boolean;
  regex: string;
  re: RegExp;
}

export interface AppService {
  id: string;
  url: string | null;
  asToken: string;
  hsToken: string;
  senderLocalpart: string;
  /** `@<sender_localpart>:<server_name>` */
  senderUserId: string;
  namespaces: { users: Namespace[]; aliases: Namespace[]; rooms: Namespace[] };
  rateLimited: boolean;
  protocols: string[];
  /** `receive_ephemeral`, or MSC2409's `de.sorunome.msc2409.push_ephemeral` / `push_ephemeral`. */
  receiveEphemeral: boolean;
  /** `org.matrix.msc3202`: device lists, one-time key counts and to-device messages for its devices. */
  msc3202: boolean;
  /** The registration file path, for error messages. */
  file: string;
}

const NamespaceEntry = z.object({ exclusive: z.boolean(), regex: z.string().min(1) });

const Registration = z.object({
  id: z.string().min(1),
  url: z.string().min(1).nullable(),
  as_token: z.string().min(1),
  hs_token: z.string().min(1),
  sender_localpart: z.string().min(1),
  namespaces: z
    .object({
      users: z.array(NamespaceEntry).default([]),
      aliases: z.array(NamespaceEntry).default([]),
      rooms: z.array(NamespaceEntry).default([]),
    })
    .default({ users: [], aliases: [], rooms: [] }),
  rate_limited: z.boolean().default(true),
  protocols: z.array(z.string().min(1)).default([]),
  receive_ephemeral: z.boolean().optional(),
  push_ephemeral: z.boolean().optional(),
  'de.sorunome.msc2409.push_ephemeral': z.boolean().optional(),
  'org.matrix.msc3202': z.boolean().optional(),
});

function compile(file: string, key: string, entry: { exclusive: boolean; regex: string }): Namespace {
  try {
    // Python syntax as registration files are written for Synapse: no unicode mode (it refuses escapes such as `\#`
    // that mautrix bridges write), and Python's named groups `(?P<name>` spelled as JavaScript's.
    const source = entry.regex.replace(/\(\?P</g, '(?<');
    return { exclusive: entry.exclusive, regex: entry.regex, re: new RegExp(`^(?:${source})`) };
  } catch (err) {
    throw new Error(`${file}: ${key}.regex: invalid regular expression: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Reads and validates one registration file. */
export function parseAppService(file: string, text: string, serverName: string): AppService {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new Error(`${file}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  const result = Registration.safeParse(raw ?? {});
  if (!result.success)
    throw new Error(`${file}: invalid registration: ${describeIssues(result.error.issues)}`);
  const r = result.data;
  const ns = (kind: 'users' | 'aliases' | 'rooms'): Namespace[] =>
    r.namespaces[kind].map((e, i) => compile(file, `namespaces.${kind}[${i}]`, e));
  const senderUserId = `@${r.sender_localpart}:${serverName}`;
  if (!/^@[a-z0-9._=\-/+]+:/.test(senderUserId))
    throw new Error(`${file}: sender_localpart: not a valid user localpart: ${r.sender_localpart}`);
  return {
    id: r.id,
    url: r.url,
    asToken: r.as_token,
    hsToken: r.hs_token,
    senderLocalpart: r.sender_localpart,
    senderUserId,
    namespaces: { users: ns('users'), aliases: ns('aliases'), rooms: ns('rooms') },
    rateLimited: r.rate_limited,
    protocols: r.protocols,
    receiveEphemeral:
      r.receive_ephemeral ?? r['de.sorunome.msc2409.push_ephemeral'] ?? r.push_ephemeral ?? false,
    msc3202: r['org.matrix.msc3202'] ?? false,
    file,
  };
}

/** Loads every registration file; throws an Error naming the file and key on the first problem. */
export function loadAppServices(files: readonly string[], serverName: string): AppService[] {
  const list: AppService[] = [];
  const ids = new Map<string, string>();
  const tokens = new Map<string, string>();
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(
        `cannot read application service registration ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
        { cause: err },
      );
    }
    const as = parseAppService(file, text, serverName);
    const sameId = ids.get(as.id);
    if (sameId !== undefined) throw new Error(`${file}: id: ${as.id} is already used by ${sameId}`);
    ids.set(as.id, file);
    for (const [key, token] of [
      ['as_token', as.asToken],
      ['hs_token', as.hsToken],
    ] as const) {
      const other = tokens.get(token);
      if (other !== undefined) throw new Error(`${file}: ${key}: the same token is already used by ${other}`);
      tokens.set(token, file);
    }
    list.push(as);
  }
  return list;
}

const matches = (list: readonly Namespace[], value: string): boolean => list.some((n) => n.re.test(value));
const matchesExclusive = (list: readonly Namespace[], value: string): boolean =>
  list.some((n) => n.exclusive && n.re.test(value));

export class AppServiceRegistry {
  readonly #list: readonly AppService[];
  readonly #byId = new Map<string, AppService>();
  readonly #byToken = new Map<string, AppService>();

  constructor(list: AppService[]) {
    this.#list = list;
    for (const as of list) {
      this.#byId.set(as.id, as);
      this.#byToken.set(as.asToken, as);
    }
  }

  all(): readonly AppService[] {
    return this.#list;
  }

  byId(id: string): AppService | undefined {
    return this.#byId.get(id);
  }

  byToken(asToken: string): AppService | undefined {
    return this.#byToken.get(asToken);
  }

  /** The AS's sender user, or a user in its users namespace. */
  isInterestedInUser(as: AppService, userId: string): boolean {
    return userId === as.senderUserId || matches(as.namespaces.users, userId);
  }

  isInterestedInAlias(as: AppService, alias: string): boolean {
    return matches(as.namespaces.aliases, alias);
  }

  isInterestedInRoom(as: AppService, roomId: string): boolean {
    return matches(as.namespaces.rooms, roomId);
  }

  /** The AS that holds this user exclusively (its sender counts as exclusive). */
  exclusiveUserOwner(userId: string): AppService | undefined {
    return this.#list.find(
      (as) => as.senderUserId === userId || matchesExclusive(as.namespaces.users, userId),
    );
  }

  exclusiveAliasOwner(alias: string): AppService | undefined {
    return this.#list.find((as) => matchesExclusive(as.namespaces.aliases, alias));
  }
}
