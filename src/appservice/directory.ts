/**
 * Application service networks in the published room directory, as Synapse lists them: the plain listing is the
 * server's own list; `third_party_instance_id` (`<appservice id>|<network id>`, from /thirdparty/protocols) is one
 * network's list; `include_all_networks` is the server's list and every network's.
 */
import { MatrixError } from '../api/errors.js';
import { publishedRoomIds } from '../storage/appservice-directory.js';
import type { Executor } from '../storage/users.js';

/** The rooms to list, or undefined for the server's own list. */
export async function appServiceNetworkRooms(
  db: Executor,
  includeAllNetworks: boolean,
  thirdPartyInstanceId: string | undefined,
): Promise<string[] | undefined> {
  if (includeAllNetworks) {
    if (thirdPartyInstanceId !== undefined)
      throw new MatrixError('M_INVALID_PARAM', "Can't use include_all_networks with an explicit network");
    return publishedRoomIds(db, 'all');
  }
  if (thirdPartyInstanceId === undefined) return undefined;
  const bar = thirdPartyInstanceId.indexOf('|');
  if (bar <= 0 || bar === thirdPartyInstanceId.length - 1)
    throw new MatrixError('M_INVALID_PARAM', `Invalid third_party_instance_id: ${thirdPartyInstanceId}`);
  return publishedRoomIds(db, {
    asId: thirdPartyInstanceId.slice(0, bar),
    networkId: thirdPartyInstanceId.slice(bar + 1),
  });
}
