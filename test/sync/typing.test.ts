import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { typingEvent } from '../../src/sync/ephemeral.js';
import { MAX_TYPING_TIMEOUT_MS, TypingStore } from '../../src/sync/typing.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type Client, type TestServer } from '../helpers/server.js';

describe('TypingStore', () => {
  it('tracks who types per room, in start order, and bumps the serial on each change', () => {
    const changes: string[] = [];
    const store = new TypingStore({ onChange: (r) => changes.push(r) });
    assert.equal(store.serial, 0);
    store.set('!a', '@x', true, 10_000);
    store.set('!a', '@y', true, 10_000);
    store.set('!b', '@x', true, 10_000);
    assert.deepEqual(store.typingIn('!a'), ['@x', '@y']);
    assert.deepEqual(store.typingIn('!b'), ['@x']);
    assert.deepEqual(store.typingIn('!c'), []);
    assert.equal(store.serial, 3);
    assert.deepEqual(changes, ['!a', '!a', '!b']);
    store.close();
  });

  it('does not bump for a renewal or for stopping a user who is not typing', () => {
    const store = new TypingStore();
    store.set('!a', '@x', true, 10_000);
    const s = store.serial;
    store.set('!a', '@x', true, 20_000);
    store.set('!a', '@nobody', false, 0);
    store.set('!z', '@x', false, 0);
    assert.equal(store.serial, s);
    store.set('!a', '@x', false, 0);
    assert.equal(store.serial, s + 1);
    assert.deepEqual(store.typingIn('!a'), []);
    store.close();
  });

  it('reports rooms changed since a serial, including rooms that became empty', () => {
    const store = new TypingStore();
    store.set('!a', '@x', true, 10_000);
    const s = store.serial;
    assert.deepEqual(store.roomsChangedSince(s), []);
    store.set('!b', '@x', true, 10_000);
    store.set('!a', '@x', false, 0);
    assert.deepEqual(store.roomsChangedSince(s).sort(), ['!a', '!b']);
    assert.deepEqual(store.roomsChangedSince(0).sort(), ['!a', '!b']);
    assert.equal(store.roomChangedSince('!a', s), true);
    assert.equal(store.roomChangedSince('!c', s), false);
    // A serial from an earlier process (above the current one) reports every known room.
    assert.deepEqual(store.roomsChangedSince(store.serial + 100).sort(), ['!a', '!b']);
    store.close();
  });

  it('expires typing with one timer, bumping the serial and notifying the room', async () => {
    const changes: string[] = [];
    const store = new TypingStore({ onChange: (r) => changes.push(r) });
    // Wide margins: the assertions must hold on a loaded machine where timers fire late.
    store.set('!a', '@x', true, 30);
    store.set('!a', '@y', true, 5_000);
    store.set('!b', '@z', true, 1_000);
    const s = store.serial;
    await sleep(300);
    assert.deepEqual(store.typingIn('!a'), ['@y']);
    assert.deepEqual(store.typingIn('!b'), ['@z']);
    assert.equal(store.serial, s + 1);
    assert.deepEqual(store.roomsChangedSince(s), ['!a']);
    await sleep(900);
    assert.deepEqual(store.typingIn('!b'), []);
    assert.deepEqual(changes.slice(-2), ['!a', '!b']);
    store.close();
  });

  it('keeps a renewed user typing past the first timeout', async () => {
    const store = new TypingStore();
    store.set('!a', '@x', true, 30);
    store.set('!a', '@x', true, 2_000);
    await sleep(200);
    assert.deepEqual(store.typingIn('!a'), ['@x']);
    store.close();
  });

  it('caps the timeout at 120 s and treats a negative one as zero', () => {
    let now = 1_000_000;
    const store = new TypingStore({ now: () => now });
    store.set('!a', '@x', true, 10 * MAX_TYPING_TIMEOUT_MS);
    now += MAX_TYPING_TIMEOUT_MS - 1;
    assert.deepEqual(store.typingIn('!a'), ['@x']);
    store.close();
    const other = new TypingStore();
    other.set('!a', '@x', true, -5);
    assert.deepEqual(other.typingIn('!a'), ['@x']); // until the timer runs
    other.close();
  });

  it('builds the m.typing event', () => {
    const store = new TypingStore();
    store.set('!a', '@x', true, 10_000);
    assert.deepEqual(typingEvent(store, '!a'), { type: 'm.typing', content: { user_ids: ['@x'] } });
    assert.deepEqual(typingEvent(store, '!none'), { type: 'm.typing', content: { user_ids: [] } });
    store.close();
  });
});

for (const engine of ENGINES) {
  describe(`${engine}: typing notifications`, () => {
    let server: TestServer;
    let alice: Client & { userId: string };
    let bob: Client & { userId: string };
    let roomId: string;
    const path = (rid: string, userId: string): string =>
      `/_matrix/client/v3/rooms/${encodeURIComponent(rid)}/typing/${encodeURIComponent(userId)}`;

    before(async () => {
      server = await startTestServer(engine);
      alice = await server.user('alice');
      bob = await server.user('bob');
      const created = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      roomId = created.body.room_id as string;
    });
    after(() => server.close());

    const typing = (): TypingStore => server.hs.typing;

    it('sets and clears typing for a joined user', async () => {
      const serial = typing().serial;
      const res = await alice.put(path(roomId, alice.userId), { typing: true, timeout: 10_000 });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, {});
      assert.deepEqual(typing().typingIn(roomId), [alice.userId]);
      assert.deepEqual(typing().roomsChangedSince(serial), [roomId]);
      const stop = await alice.put(path(roomId, alice.userId), { typing: false });
      assert.equal(stop.status, 200);
      assert.deepEqual(typing().typingIn(roomId), []);
    });

    it('expires a short timeout', async () => {
      const before = typing().serial;
      const res = await alice.put(path(roomId, alice.userId), { typing: true, timeout: 50 });
      assert.equal(res.status, 200);
      assert.deepEqual(typing().typingIn(roomId), [alice.userId]);
      await sleep(120);
      assert.deepEqual(typing().typingIn(roomId), []);
      assert.equal(typing().serial, before + 2);
    });

    it('refuses setting the typing state of another user with 403 M_FORBIDDEN', async () => {
      const res = await bob.put(path(roomId, alice.userId), { typing: true, timeout: 1000 });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
    });

    it('refuses a user who is not joined, and an unknown room, with 403 M_FORBIDDEN', async () => {
      const res = await bob.put(path(roomId, bob.userId), { typing: true, timeout: 1000 });
      assert.equal(res.status, 403);
      assert.equal(res.body.errcode, 'M_FORBIDDEN');
      const unknown = await bob.put(path('!nowhere:test.local', bob.userId), { typing: true });
      assert.equal(unknown.status, 403);
      assert.equal(unknown.body.errcode, 'M_FORBIDDEN');
      assert.deepEqual(typing().typingIn(roomId), []);
    });

    it('validates the body', async () => {
      const missing = await alice.put(path(roomId, alice.userId), { timeout: 1000 });
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errcode, 'M_MISSING_PARAM');
      const wrong = await alice.put(path(roomId, alice.userId), { typing: 'yes' });
      assert.equal(wrong.status, 400);
      assert.equal(wrong.body.errcode, 'M_BAD_JSON');
      const negative = await alice.put(path(roomId, alice.userId), { typing: true, timeout: -1 });
      assert.equal(negative.status, 400);
      assert.equal(negative.body.errcode, 'M_BAD_JSON');
    });

    it('requires an access token', async () => {
      const res = await alice.put(path(roomId, alice.userId), { typing: true }, { token: null });
      assert.equal(res.status, 401);
      assert.equal(res.body.errcode, 'M_MISSING_TOKEN');
    });
  });
}
