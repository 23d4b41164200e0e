/**
 * SyTest-style room conformance details (issue 11), as Synapse behaves:
 * - a state event identical to the current one (type, state key, sender, content) is not sent again: its id is
 *   returned (PUT state, and joining twice);
 * - a redaction of an event of another room is refused with 400, whichever path sends it;
 * - rooms of every version 1-12 can be created, written, joined, synced, paginated, redacted and upgraded.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  computeReferenceHash,
  encodeUnpaddedBase64,
  publicKeyBase64FromSeed,
  verifyEventSignature,
  type JsonObject,
} from '../../src/rooms/index.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type Json, type TestServer } from '../helpers/server.js';

type User = Client & { userId: string; deviceId: string };

const enc = encodeURIComponent;
const R = '/_matrix/client/v3/rooms';
let txn = 0;

async function createRoom(user: Client, body: Json = {}): Promise<string> {
  const res = await user.post('/_matrix/client/v3/createRoom', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

async function sendMessage(user: Client, roomId: string, body: string): Promise<string> {
  const res = await user.put(`${R}/${enc(roomId)}/send/m.room.message/t${++txn}`, {
    msgtype: 'm.text',
    body,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function putState(user: Client, roomId: string, type: string, key: string, content: Json) {
  return user.put(`${R}/${enc(roomId)}/state/${enc(type)}/${enc(key)}`, content);
}

async function stateEventId(user: Client, roomId: string, type: string, key = ''): Promise<string> {
  const res = await user.get(`${R}/${enc(roomId)}/state/${enc(type)}/${enc(key)}?format=event`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

/** Stored events of `type` in the room (rows, not what an API shows). */
async function countEvents(
  server: TestServer,
  roomId: string,
  type: string,
  stateKey?: string,
): Promise<number> {
  let q = server.hs.storage.db
    .selectFrom('events as e')
    .innerJoin('rooms as r', 'r.room_nid', 'e.room_nid')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('r.room_id', '=', roomId)
    .where('e.type', '=', type);
  if (stateKey !== undefined) q = q.where('e.state_key', '=', stateKey);
  return Number((await q.executeTakeFirstOrThrow()).n);
}

async function storedJson(server: TestServer, eventId: string): Promise<JsonObject> {
  const row = await server.hs.storage.db
    .selectFrom('events')
    .select('json')
    .where('event_id', '=', eventId)
    .executeTakeFirstOrThrow();
  return JSON.parse(row.json) as JsonObject;
}

/** The event id grammar of each room version: `$opaque:server` (1, 2), base64 (3), URL-safe base64 (4+). */
function eventIdPattern(version: number): RegExp {
  if (version <= 2) return /^\$[A-Za-z]{18}:test\.local$/;
  if (version === 3) return /^\$[A-Za-z0-9+/]{43}$/;
  return /^\$[A-Za-z0-9_-]{43}$/;
}

for (const engine of ENGINES) {
  describe(`${engine}: room conformance (SyTest)`, () => {
    let server: TestServer;
    let alice: User;
    let bob: User;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
    });
    after(() => server.close());

    describe('identical state is not sent twice', () => {
      it('PUT state with the current content returns the current event id and stores nothing', async () => {
        const roomId = await createRoom(alice);
        const first = await putState(alice, roomId, 'a.test.state', '', { a_key: 'a_value' });
        assert.equal(first.status, 200);
        const again = await putState(alice, roomId, 'a.test.state', '', { a_key: 'a_value' });
        assert.equal(again.status, 200);
        assert.equal(again.body.event_id, first.body.event_id);
        assert.equal(await countEvents(server, roomId, 'a.test.state'), 1);

        // Key order does not matter (canonical JSON); another value is a new event, and so is going back.
        const changed = await putState(alice, roomId, 'a.test.state', '', { a_key: 'other' });
        assert.notEqual(changed.body.event_id, first.body.event_id);
        const back = await putState(alice, roomId, 'a.test.state', '', { a_key: 'a_value' });
        assert.notEqual(back.body.event_id, first.body.event_id);
        assert.notEqual(back.body.event_id, changed.body.event_id);
        assert.equal(await countEvents(server, roomId, 'a.test.state'), 3);
        const twoKeys = await putState(alice, roomId, 'b.test.state', 'k', { x: 1, y: [1, 2] });
        const reordered = await putState(alice, roomId, 'b.test.state', 'k', { y: [1, 2], x: 1 });
        assert.equal(reordered.body.event_id, twoKeys.body.event_id);
      });

      it('the same content from another sender is a new event', async () => {
        const roomId = await createRoom(alice, {
          preset: 'public_chat',
          power_level_content_override: { users: { [bob.userId]: 50 } },
        });
        assert.equal((await bob.post(`${R}/${enc(roomId)}/join`, {})).status, 200);
        const byAlice = await putState(alice, roomId, 'm.room.topic', '', { topic: 'same' });
        const byBob = await putState(bob, roomId, 'm.room.topic', '', { topic: 'same' });
        assert.equal(byBob.status, 200);
        assert.notEqual(byBob.body.event_id, byAlice.body.event_id);
        assert.equal(await stateEventId(alice, roomId, 'm.room.topic'), byBob.body.event_id);
      });

      it('joining a room twice keeps the first membership event', async () => {
        const roomId = await createRoom(alice, { preset: 'public_chat' });
        assert.equal((await bob.post(`${R}/${enc(roomId)}/join`, {})).status, 200);
        const joined = await stateEventId(bob, roomId, 'm.room.member', bob.userId);
        const again = await bob.post(`/_matrix/client/v3/join/${enc(roomId)}`, {});
        assert.equal(again.status, 200);
        assert.equal(again.body.room_id, roomId);
        assert.equal(await stateEventId(bob, roomId, 'm.room.member', bob.userId), joined);
        assert.equal(await countEvents(server, roomId, 'm.room.member', bob.userId), 1);
        // The creator re-joining their own room is also a no-op.
        const creatorJoin = await stateEventId(alice, roomId, 'm.room.member', alice.userId);
        assert.equal((await alice.post(`${R}/${enc(roomId)}/join`, {})).status, 200);
        assert.equal(await stateEventId(alice, roomId, 'm.room.member', alice.userId), creatorJoin);
      });
    });

    describe('redactions never cross rooms', () => {
      it('refuses to redact an event of another room with 400, on /redact and on /send', async () => {
        const roomA = await createRoom(alice, { preset: 'public_chat' });
        const roomB = await createRoom(alice, { preset: 'public_chat' });
        assert.equal((await bob.post(`${R}/${enc(roomA)}/join`, {})).status, 200);
        const inB = await sendMessage(alice, roomB, 'stays in B');
        const redactions = await countEvents(server, roomA, 'm.room.redaction');

        const viaRedact = await alice.put(`${R}/${enc(roomA)}/redact/${enc(inB)}/x${++txn}`, {});
        assert.equal(viaRedact.status, 400, JSON.stringify(viaRedact.body));
        assert.equal(viaRedact.body.errcode, 'M_UNKNOWN');
        assert.match(viaRedact.body.error as string, /different room/);
        const byMember = await bob.put(`${R}/${enc(roomA)}/redact/${enc(inB)}/x${++txn}`, {});
        assert.equal(byMember.status, 400);
        const viaSend = await alice.put(`${R}/${enc(roomA)}/send/m.room.redaction/x${++txn}`, {
          redacts: inB,
        });
        assert.equal(viaSend.status, 400);

        assert.equal(await countEvents(server, roomA, 'm.room.redaction'), redactions);
        const ev = await alice.get(`${R}/${enc(roomB)}/event/${enc(inB)}`);
        assert.equal(ev.status, 200);
        assert.deepEqual(ev.body.content, { msgtype: 'm.text', body: 'stays in B' });
      });

      it('keeps the redaction rules of the room: own events, the redact level, create event', async () => {
        const roomId = await createRoom(alice, { preset: 'public_chat' });
        assert.equal((await bob.post(`${R}/${enc(roomId)}/join`, {})).status, 200);
        const aliceMsg = await sendMessage(alice, roomId, 'by alice');
        const bobMsg = await sendMessage(bob, roomId, 'by bob');

        const notHis = await bob.put(`${R}/${enc(roomId)}/redact/${enc(aliceMsg)}/r${++txn}`, {});
        assert.equal(notHis.status, 403);
        assert.equal(notHis.body.errcode, 'M_FORBIDDEN');
        const notHisViaSend = await bob.put(`${R}/${enc(roomId)}/send/m.room.redaction/r${++txn}`, {
          redacts: aliceMsg,
        });
        assert.equal(notHisViaSend.status, 403, 'the /send path checks as /redact does');
        const unknown = await bob.put(
          `${R}/${enc(roomId)}/redact/${enc('$nothing:test.local')}/r${++txn}`,
          {},
        );
        assert.equal(unknown.status, 404);
        assert.equal(unknown.body.errcode, 'M_NOT_FOUND');
        const create = await stateEventId(alice, roomId, 'm.room.create');
        const createRedaction = await alice.put(`${R}/${enc(roomId)}/redact/${enc(create)}/r${++txn}`, {});
        assert.equal(createRedaction.status, 403);

        assert.equal((await bob.put(`${R}/${enc(roomId)}/redact/${enc(bobMsg)}/r${++txn}`, {})).status, 200);
        assert.equal(
          (await alice.put(`${R}/${enc(roomId)}/redact/${enc(aliceMsg)}/r${++txn}`, {})).status,
          200,
        );
        for (const id of [aliceMsg, bobMsg]) {
          assert.deepEqual((await alice.get(`${R}/${enc(roomId)}/event/${enc(id)}`)).body.content, {});
        }
      });
    });

    describe('room versions 1 to 12', () => {
      it('lists every version as stable in the m.room_versions capability', async () => {
        const res = await alice.get('/_matrix/client/v3/capabilities');
        assert.equal(res.status, 200);
        const cap = (res.body.capabilities as Json)['m.room_versions'] as Json;
        assert.equal(cap.default, '12');
        const expected: Record<string, string> = {};
        for (let v = 1; v <= 12; v++) expected[String(v)] = 'stable';
        assert.deepEqual(cap.available, expected);
      });

      for (let v = 1; v <= 12; v++) {
        it(`creates, writes, joins, syncs, paginates and redacts in a version ${v} room`, async () => {
          const roomId = await createRoom(alice, {
            room_version: String(v),
            preset: 'public_chat',
            name: `v${v}`,
          });
          if (v === 12) assert.match(roomId, /^![A-Za-z0-9_-]{43}$/);
          else assert.match(roomId, /^![A-Za-z0-9_-]+:test\.local$/);

          const create = await alice.get(`${R}/${enc(roomId)}/state/m.room.create/?format=event`);
          assert.equal(create.status, 200);
          const createContent = create.body.content as Json;
          assert.equal(createContent.room_version, String(v));
          if (v < 11) assert.equal(createContent.creator, alice.userId);
          else assert.equal('creator' in createContent, false);
          assert.match(create.body.event_id as string, eventIdPattern(v));

          const msg = await sendMessage(alice, roomId, `hello v${v}`);
          assert.match(msg, eventIdPattern(v));
          const topic = await putState(alice, roomId, 'm.room.topic', '', { topic: `topic v${v}` });
          assert.equal(topic.status, 200);
          assert.match(topic.body.event_id as string, eventIdPattern(v));

          assert.equal((await bob.post(`${R}/${enc(roomId)}/join`, {})).status, 200);
          const bobMsg = await sendMessage(bob, roomId, `bob in v${v}`);

          const sync = await bob.get(
            `/_matrix/client/v3/sync?filter=${enc(JSON.stringify({ room: { rooms: [roomId], timeline: { limit: 50 } } }))}`,
          );
          assert.equal(sync.status, 200);
          const joined = ((sync.body.rooms as Json).join as Json)[roomId] as Json;
          const timelineIds = ((joined.timeline as Json).events as Json[]).map((e) => e.event_id);
          for (const id of [msg, topic.body.event_id, bobMsg])
            assert.ok(timelineIds.includes(id), `${id} in sync`);

          const messages = await bob.get(`${R}/${enc(roomId)}/messages?dir=b&limit=50`);
          assert.equal(messages.status, 200);
          const chunkIds = (messages.body.chunk as Json[]).map((e) => e.event_id);
          assert.ok(chunkIds.includes(msg) && chunkIds.includes(bobMsg), 'both messages in /messages');

          const redaction = await alice.put(`${R}/${enc(roomId)}/redact/${enc(msg)}/v${++txn}`, {
            reason: 'test',
          });
          assert.equal(redaction.status, 200, JSON.stringify(redaction.body));
          assert.match(redaction.body.event_id as string, eventIdPattern(v));
          const redacted = await bob.get(`${R}/${enc(roomId)}/event/${enc(msg)}`);
          assert.deepEqual(redacted.body.content, {});
          const because = (redacted.body.unsigned as Json).redacted_because as Json;
          assert.equal(because.event_id, redaction.body.event_id);
          // bob may not redact alice's event in any version (in v1/v2 the auth rules alone would let him: the
          // event ids share a server name).
          const topicId = topic.body.event_id as string;
          assert.equal(
            (await bob.put(`${R}/${enc(roomId)}/redact/${enc(topicId)}/v${++txn}`, {})).status,
            403,
          );
        });
      }

      it('stores version 1/2 events in their wire form: own id, hashed and signed [id, hash] references', async () => {
        const roomId = await createRoom(alice, { room_version: '1' });
        const first = await sendMessage(alice, roomId, 'one');
        const second = await sendMessage(alice, roomId, 'two');
        const pdu = await storedJson(server, second);
        assert.equal(pdu.event_id, second);
        const prev = pdu.prev_events as [string, { sha256: string }][];
        assert.equal(prev.length, 1);
        assert.equal(prev[0]?.[0], first);
        const firstPdu = await storedJson(server, first);
        assert.equal(prev[0]?.[1].sha256, encodeUnpaddedBase64(computeReferenceHash(firstPdu, '1')));
        for (const ref of pdu.auth_events as [string, { sha256: string }][]) {
          const cited = await storedJson(server, ref[0]);
          assert.equal(ref[1].sha256, encodeUnpaddedBase64(computeReferenceHash(cited, '1')), ref[0]);
        }
        const key = server.hs.signingKey;
        assert.equal(
          verifyEventSignature(pdu, '1', server.serverName, key.keyId, publicKeyBase64FromSeed(key.seed)),
          true,
        );
        // The doctor recomputes ids and content hashes from the stored JSON and replays the room.
        const admin = await server.user('doctor-admin', { admin: true });
        const doctor = await admin.post('/_hearth/admin/v1/doctor', { room_id: roomId });
        assert.equal(doctor.status, 200, JSON.stringify(doctor.body));
        assert.equal(doctor.body.clean, true, JSON.stringify(doctor.body.problems));
      });

      it('upgrades between old and new versions both ways', async () => {
        const v1 = await createRoom(alice, { room_version: '1', preset: 'public_chat' });
        const up = await alice.post(`${R}/${enc(v1)}/upgrade`, { new_version: '12' });
        assert.equal(up.status, 200, JSON.stringify(up.body));
        const v12 = up.body.replacement_room as string;
        const tombstone = await alice.get(`${R}/${enc(v1)}/state/m.room.tombstone/`);
        assert.equal(tombstone.body.replacement_room, v12);
        const down = await alice.post(`${R}/${enc(v12)}/upgrade`, { new_version: '2' });
        assert.equal(down.status, 200, JSON.stringify(down.body));
        const v2 = down.body.replacement_room as string;
        const create = await alice.get(`${R}/${enc(v2)}/state/m.room.create/`);
        assert.equal(create.body.room_version, '2');
        assert.equal(create.body.creator, alice.userId);
        assert.equal((create.body.predecessor as Json).room_id, v12);
        assert.match(await sendMessage(alice, v2, 'after the upgrade'), eventIdPattern(2));
        const unknown = await alice.post(`${R}/${enc(v2)}/upgrade`, { new_version: '13' });
        assert.equal(unknown.status, 400);
        assert.equal(unknown.body.errcode, 'M_UNSUPPORTED_ROOM_VERSION');
      });
    });
  });
}
