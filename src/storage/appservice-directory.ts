/** The rooms application services published in their networks' room directories (migration 0019). */
import type { Executor } from './users.js';

export async function setAppServiceRoomListed(
  db: Executor,
  asId: string,
  networkId: string,
  roomId: string,
  listed: boolean,
): Promise<void> {
  await db
    .deleteFrom('appservice_room_list')
    .where('as_id', '=', asId)
    .where('network_id', '=', networkId)
    .where('room_id', '=', roomId)
    .execute();
  if (listed)
    await db
      .insertInto('appservice_room_list')
      .values({ as_id: asId, network_id: networkId, room_id: roomId })
      .execute();
}

/**
 * The published rooms of one network (`{asId, networkId}`), or of every network with the server's own list
 * (`all`).
 */
export async function publishedRoomIds(
  db: Executor,
  network: { asId: string; networkId: string } | 'all',
): Promise<string[]> {
  if (network === 'all') {
    const rows = await db
      .selectFrom('rooms')
      .select('room_id')
      .where('is_public', '=', 1)
      .union(db.selectFrom('appservice_room_list').select('room_id'))
      .execute();
    return rows.map((r) => r.room_id);
  }
  const rows = await db
    .selectFrom('appservice_room_list')
    .select('room_id')
    .where('as_id', '=', network.asId)
    .where('network_id', '=', network.networkId)
    .execute();
  return rows.map((r) => r.room_id);
}
