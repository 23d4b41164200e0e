import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { redact } from '../../src/rooms/index.js';

const base = {
  auth_events: ['$a'],
  depth: 5,
  hashes: { sha256: 'h' },
  origin: 'example.org',
  origin_server_ts: 1,
  prev_events: ['$p'],
  prev_state: [],
  membership: 'join',
  room_id: '!r:example.org',
  sender: '@u:example.org',
  signatures: { 'example.org': { 'ed25519:1': 's' } },
  unsigned: { age: 1 },
  extra_top_level: true,
};

function ev(type: string, content: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { ...base, type, state_key: '', content, ...extra };
}

describe('redact', () => {
  it('strips unknown top-level keys and unsigned in every version', () => {
    for (const v of ['1', '6', '10', '11', '12']) {
      const r = redact(ev('m.room.message', { body: 'hi' }), v);
      assert.equal('extra_top_level' in r, false, v);
      assert.equal('unsigned' in r, false, v);
      assert.deepEqual(r['content'], {}, v);
      assert.deepEqual(r['signatures'], base.signatures, v);
      assert.deepEqual(r['hashes'], base.hashes, v);
    }
  });

  it('keeps origin, membership and prev_state up to v10 but not in v11+', () => {
    const v10 = redact(ev('m.room.message', {}), '10');
    assert.equal(v10['origin'], 'example.org');
    assert.equal(v10['membership'], 'join');
    assert.deepEqual(v10['prev_state'], []);
    const v11 = redact(ev('m.room.message', {}), '11');
    for (const k of ['origin', 'membership', 'prev_state']) assert.equal(k in v11, false, k);
  });

  it('m.room.create keeps only creator before v11 and all content from v11', () => {
    const content = { creator: '@u:example.org', room_version: '10', 'm.federate': false };
    assert.deepEqual(redact(ev('m.room.create', content), '10')['content'], { creator: '@u:example.org' });
    assert.deepEqual(redact(ev('m.room.create', content), '11')['content'], content);
  });

  it('m.room.power_levels keeps invite only from v11', () => {
    const content = {
      ban: 50,
      invite: 0,
      kick: 50,
      users: { '@u:example.org': 100 },
      notifications: { room: 50 },
    };
    assert.deepEqual(redact(ev('m.room.power_levels', content), '10')['content'], {
      ban: 50,
      kick: 50,
      users: { '@u:example.org': 100 },
    });
    assert.deepEqual(redact(ev('m.room.power_levels', content), '11')['content'], {
      ban: 50,
      invite: 0,
      kick: 50,
      users: { '@u:example.org': 100 },
    });
  });

  it('m.room.join_rules keeps allow from v8', () => {
    const content = {
      join_rule: 'restricted',
      allow: [{ type: 'm.room_membership', room_id: '!x:y' }],
      x: 1,
    };
    assert.deepEqual(redact(ev('m.room.join_rules', content), '7')['content'], { join_rule: 'restricted' });
    assert.deepEqual(redact(ev('m.room.join_rules', content), '8')['content'], {
      join_rule: 'restricted',
      allow: content.allow,
    });
  });

  it('m.room.member keeps join_authorised_via_users_server from v9 and third_party_invite.signed from v11', () => {
    const content = {
      membership: 'join',
      displayname: 'U',
      join_authorised_via_users_server: '@a:example.org',
      third_party_invite: { display_name: 'x', signed: { mxid: '@u:example.org', token: 't' } },
    };
    assert.deepEqual(redact(ev('m.room.member', content), '8')['content'], { membership: 'join' });
    assert.deepEqual(redact(ev('m.room.member', content), '9')['content'], {
      membership: 'join',
      join_authorised_via_users_server: '@a:example.org',
    });
    assert.deepEqual(redact(ev('m.room.member', content), '11')['content'], {
      membership: 'join',
      join_authorised_via_users_server: '@a:example.org',
      third_party_invite: { signed: { mxid: '@u:example.org', token: 't' } },
    });
  });

  it('m.room.aliases keeps aliases only before v6', () => {
    const content = { aliases: ['#a:example.org'] };
    assert.deepEqual(redact(ev('m.room.aliases', content), '5')['content'], content);
    assert.deepEqual(redact(ev('m.room.aliases', content), '6')['content'], {});
  });

  it('m.room.redaction keeps content.redacts from v11; top-level redacts is never kept', () => {
    const r = ev('m.room.redaction', { redacts: '$x', reason: 'spam' }, { redacts: '$x' });
    const v10 = redact(r, '10');
    assert.deepEqual(v10['content'], {});
    assert.equal('redacts' in v10, false);
    assert.deepEqual(redact(r, '11')['content'], { redacts: '$x' });
  });

  it('keeps history_visibility and does not modify the input', () => {
    const input = ev('m.room.history_visibility', { history_visibility: 'shared', other: 1 });
    const copy = structuredClone(input);
    assert.deepEqual(redact(input, '12')['content'], { history_visibility: 'shared' });
    assert.deepEqual(input, copy);
  });

  it('throws for an unknown room version', () => {
    assert.throws(() => redact(ev('m.room.message', {}), '99'), /Unknown room version: 99/);
  });
});
