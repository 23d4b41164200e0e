/**
 * The room change cache's latest events (src/sync/change-cache.ts): unread counts of woken long-polls take the
 * events after a remembered count from here, so it may only answer for ranges it knows every event of.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RoomChangeCache } from '../../src/sync/change-cache.js';

const msg = (sender: string) => ({ type: 'm.room.message', sender, content: { body: 'hi' } });

describe('room change cache: latest events of a room', () => {
  it('answers for positions after its start, oldest first, without the reader and past upTo', () => {
    const c = new RoomChangeCache(100);
    c.record('!a', 101, msg('@x:hs'), 1);
    c.record('!a', 102, msg('@me:hs'), 2);
    c.record('!b', 103, msg('@x:hs'), 3);
    c.record('!a', 104, msg('@y:hs'), 4);
    c.record('!a', 105, msg('@y:hs'), 5);
    assert.deepEqual(c.recentFromOthers('!a', 100, 104, '@me:hs', 200), {
      nids: [1, 4],
      positions: [101, 104],
    });
    assert.deepEqual(c.recentFromOthers('!a', 101, 105, '@me:hs', 1), { nids: [5], positions: [105] });
    // A room with no event since the start: nothing (known, not unknown).
    assert.deepEqual(c.recentFromOthers('!c', 100, 105, '@me:hs', 200), { nids: [], positions: [] });
    // Before the start the cache does not know: the caller queries.
    assert.equal(c.recentFromOthers('!a', 99, 105, '@me:hs', 200), undefined);
    assert.equal(c.recentFromOthers('!c', 50, 105, '@me:hs', 200), undefined);
  });

  it('forgets the oldest events of a busy room and then answers only after them', () => {
    const c = new RoomChangeCache(0);
    for (let pos = 1; pos <= 30; pos++) c.record('!a', pos, msg('@x:hs'), 1000 + pos);
    // 20 kept: 11..30.
    assert.equal(c.recentFromOthers('!a', 9, 30, '@me:hs', 200), undefined);
    assert.equal(c.recentFromOthers('!a', 10, 30, '@me:hs', 200)?.nids.length, 20);
    assert.deepEqual(c.recentFromOthers('!a', 28, 30, '@me:hs', 200)?.positions, [29, 30]);
  });

  it('puts a late commit in its place and ignores backfilled events', () => {
    const c = new RoomChangeCache(0);
    c.record('!a', 2, msg('@x:hs'), 2);
    c.record('!a', 1, msg('@x:hs'), 1);
    c.record('!a', -5, msg('@x:hs'), 9);
    assert.deepEqual(c.recentFromOthers('!a', 0, 10, '@me:hs', 200), { nids: [1, 2], positions: [1, 2] });
  });

  it('does not answer across an event it could not keep (no sender)', () => {
    const c = new RoomChangeCache(0);
    c.record('!a', 1, msg('@x:hs'), 1);
    c.record('!a', 2, { type: 'm.room.message', content: {} }, 2);
    c.record('!a', 3, msg('@x:hs'), 3);
    assert.equal(c.recentFromOthers('!a', 0, 10, '@me:hs', 200), undefined);
    assert.deepEqual(c.recentFromOthers('!a', 2, 10, '@me:hs', 200), { nids: [3], positions: [3] });
  });

  it('after a repair, knows nothing of the room up to the position it names', () => {
    const c = new RoomChangeCache(0);
    c.record('!a', 1, msg('@x:hs'), 1);
    c.record('!a', 2, msg('@x:hs'), 2);
    c.forgetRoom('!a', 5);
    assert.equal(c.recentFromOthers('!a', 2, 10, '@me:hs', 200), undefined);
    assert.deepEqual(c.recentFromOthers('!a', 5, 10, '@me:hs', 200), { nids: [], positions: [] });
    // Every shortcut now says the room may have changed after anything before the repair.
    assert.deepEqual(c.maybeChangedSince(['!a'], 4), new Set(['!a']));
    assert.equal(c.mayHave('state', '!a', 4), true);
    assert.equal(c.mayHave('redaction', '!a', 5), false);
    c.record('!a', 6, msg('@x:hs'), 6);
    assert.deepEqual(c.recentFromOthers('!a', 5, 10, '@me:hs', 200), { nids: [6], positions: [6] });
    // A room the cache had never seen is forgotten the same way.
    c.forgetRoom('!b', 6);
    assert.equal(c.recentFromOthers('!b', 3, 10, '@me:hs', 200), undefined);
  });
});
