/**
 * The `extensions` of a simplified sliding sync request (MSC4186): to_device, e2ee, account_data, receipts and
 * typing. The core endpoint (src/api/client/sliding-sync.ts) passes the body's `extensions` and where the response
 * starts and ends; this validates the request (unknown extensions are ignored, a malformed known one is 400
 * M_INVALID_PARAM) and builds the response's `extensions`, saying whether any of it is news (so a long-poll
 * answers).
 */
import { z } from 'zod';
import { MatrixError } from '../../api/errors.js';
import type { JsonObject } from '../../rooms/event.js';
import type { SyncDeps } from '../sync.js';
import { e2eeExtension, toDeviceExtension } from './ext-e2ee.js';
import { extensionMemoryOf } from './ext-memory.js';
import {
  accountDataExtension,
  joinedAmong,
  receiptsExtension,
  selectedRooms,
  typingExtension,
} from './ext-rooms.js';

export interface SlidingPosition {
  stream: number;
  typing: number;
} // global stream position + typing serial

export interface ExtensionsInput {
  userId: string;
  deviceId: string;
  /** Identifies the connection (user, device, conn_id). */
  connKey: string;
  /** Where the previous response of this connection ended (null: initial). */
  since: SlidingPosition | null;
  /** Where this response ends. */
  to: SlidingPosition;
  /** List name -> room ids in its ranges. */
  listRooms: ReadonlyMap<string, readonly string[]>;
  /** Room subscriptions. */
  subscribedRooms: readonly string[];
}

const enabled = z.boolean().nullish();
const roomIds = z.array(z.string()).nullish();
const RoomScoped = z.looseObject({ enabled, lists: roomIds, rooms: roomIds });
const ExtensionsRequest = z.looseObject({
  to_device: z
    .looseObject({
      enabled,
      limit: z.number().int().min(0).nullish(),
      since: z.string().nullish(),
    })
    .nullish(),
  e2ee: z.looseObject({ enabled }).nullish(),
  account_data: RoomScoped.nullish(),
  receipts: RoomScoped.nullish(),
  typing: RoomScoped.nullish(),
});
type ExtensionsRequest = z.infer<typeof ExtensionsRequest>;

function parseRequest(request: unknown): ExtensionsRequest {
  if (request === undefined || request === null) return {};
  const parsed = ExtensionsRequest.safeParse(request);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue ? ['extensions', ...issue.path.map(String)].join('.') : 'extensions';
  throw new MatrixError('M_INVALID_PARAM', `Invalid ${where}: ${issue?.message ?? 'malformed'}`);
}

export async function computeExtensions(
  deps: SyncDeps,
  request: unknown /* the body's `extensions` */,
  input: ExtensionsInput,
): Promise<{ extensions: JsonObject; hasData: boolean }> {
  const req = parseRequest(request);
  const extensions: JsonObject = {};
  let hasData = false;
  const put = (name: string, r: { body: JsonObject; hasData: boolean }) => {
    extensions[name] = r.body;
    hasData ||= r.hasData;
  };
  if (req.to_device?.enabled === true) put('to_device', await toDeviceExtension(deps, req.to_device, input));
  if (req.e2ee?.enabled === true) put('e2ee', await e2eeExtension(deps, input));

  const memory = extensionMemoryOf(deps.storage);
  const prev = memory.get(input.connKey, input.since);
  const none = new Set<string>();
  const sent = { accountData: none, receipts: none, typing: none };
  if (req.account_data?.enabled === true) {
    const rooms = selectedRooms(req.account_data, input);
    put('account_data', await accountDataExtension(deps, input, rooms, prev?.accountData));
    sent.accountData = rooms;
  }
  if (req.receipts?.enabled === true) {
    const joined = await joinedAmong(deps, input.userId, selectedRooms(req.receipts, input));
    put('receipts', await receiptsExtension(deps, input, joined, prev?.receipts));
    sent.receipts = new Set(joined.keys());
  }
  if (req.typing?.enabled === true) {
    const joined = await joinedAmong(deps, input.userId, selectedRooms(req.typing, input));
    put('typing', typingExtension(deps, input, joined, prev?.typing));
    sent.typing = new Set(joined.keys());
  }
  memory.set(input.connKey, input.since === null, input.to, sent);
  return { extensions, hasData };
}
