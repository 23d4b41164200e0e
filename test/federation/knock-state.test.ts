/**
 * The room preview a knocking server keeps from the resident's send_knock answer: signed PDUs are checked (and
 * dropped when their signature fails), and servers before spec v1.16 (Synapse 1.67) are understood too: their
 * answer names the list `knock_state_events` and holds stripped, unsigned events, accepted for room versions before
 * 12 only. No storage: pure answer parsing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findRoomVersion } from '../../src/rooms/room-versions.js';
import { strippedKnockState } from '../../src/roomsvc/remote-knock.js';

const keyRing = {
  getVerifyKey: (): Promise<string | null> => Promise.resolve(null),
};
const roomId = '!room:old.example';
const name = { type: 'm.room.name', state_key: '', content: { name: 'Old room' }, sender: '@a:old.example' };

describe('send_knock answers', () => {
  it('reads stripped state under knock_state_events (servers before v1.12) for room version 10', async () => {
    const v10 = findRoomVersion('10');
    assert.ok(v10);
    const got = await strippedKnockState({ keyRing }, roomId, v10, {
      knock_state_events: [name, { type: 'm.room.join_rules' }, 'garbage', null],
    });
    assert.deepEqual(got, [name]);
  });

  it('prefers knock_room_state, and refuses unsigned entries in room version 12', async () => {
    const v10 = findRoomVersion('10');
    const v12 = findRoomVersion('12');
    assert.ok(v10 && v12);
    const other = { ...name, content: { name: 'New name' } };
    assert.deepEqual(
      await strippedKnockState({ keyRing }, roomId, v10, {
        knock_room_state: [other],
        knock_state_events: [name],
      }),
      [other],
    );
    assert.deepEqual(await strippedKnockState({ keyRing }, roomId, v12, { knock_room_state: [name] }), []);
  });

  it('drops signed entries whose signature cannot be checked', async () => {
    const v10 = findRoomVersion('10');
    assert.ok(v10);
    const forged = { ...name, room_id: roomId, signatures: { 'old.example': { 'ed25519:x': 'AAAA' } } };
    assert.deepEqual(await strippedKnockState({ keyRing }, roomId, v10, { knock_room_state: [forged] }), []);
  });
});
