import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppServiceRegistry, loadAppServices, parseAppService } from '../../src/appservice/registration.js';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer } from '../helpers/server.js';

const GOOD = `
id: irc
url: http://127.0.0.1:9999
as_token: as-secret
hs_token: hs-secret
sender_localpart: ircbot
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_.*:test\\\\.local"
  aliases:
    - exclusive: false
      regex: "#_irc_.*"
  rooms: []
protocols: [irc]
de.sorunome.msc2409.push_ephemeral: true
org.matrix.msc3202: true
`;

describe('application service registration files', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hearth-as-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it("reads Synapse's format with its defaults and MSC names", () => {
    const as = parseAppService('irc.yaml', GOOD, 'test.local');
    assert.equal(as.id, 'irc');
    assert.equal(as.senderUserId, '@ircbot:test.local');
    assert.equal(as.rateLimited, true);
    assert.equal(as.receiveEphemeral, true);
    assert.equal(as.msc3202, true);
    assert.deepEqual(as.protocols, ['irc']);
    const reg = new AppServiceRegistry([as]);
    assert.equal(reg.byToken('as-secret'), as);
    assert.equal(reg.byToken('hs-secret'), undefined);
    assert.equal(reg.byId('irc'), as);
    assert.ok(reg.isInterestedInUser(as, '@_irc_bob:test.local'));
    assert.ok(reg.isInterestedInUser(as, '@ircbot:test.local'));
    assert.ok(!reg.isInterestedInUser(as, '@bob:test.local'));
    // Anchored at the start as Synapse's re.match: a match inside the id does not count.
    assert.ok(!reg.isInterestedInUser(as, '@x_@_irc_bob:test.local'));
    assert.equal(reg.exclusiveUserOwner('@_irc_bob:test.local'), as);
    assert.equal(reg.exclusiveUserOwner('@bob:test.local'), undefined);
    assert.ok(reg.isInterestedInAlias(as, '#_irc_chan:test.local'));
    // The alias namespace is not exclusive.
    assert.equal(reg.exclusiveAliasOwner('#_irc_chan:test.local'), undefined);
    assert.ok(!reg.isInterestedInRoom(as, '!a:test.local'));
  });

  it("accepts Python regex escapes and named groups of bridges' registrations", () => {
    const as = parseAppService(
      'tg.yaml',
      [
        'id: tg',
        'url: null',
        'as_token: a',
        'hs_token: h',
        'sender_localpart: tg',
        'namespaces:',
        '  users: [{exclusive: true, regex: "@telegram_(?P<id>[0-9]+):test\\\\.local"}]',
        '  aliases: [{exclusive: true, regex: \\#telegram_.*:test\\.local}]',
      ].join('\n'),
      'test.local',
    );
    const reg = new AppServiceRegistry([as]);
    assert.ok(reg.isInterestedInAlias(as, '#telegram_42:test.local'));
    assert.ok(reg.isInterestedInUser(as, '@telegram_42:test.local'));
    assert.ok(!reg.isInterestedInUser(as, '@telegram_x:test.local'));
  });

  it('accepts url: null and receive_ephemeral', () => {
    const as = parseAppService(
      'x.yaml',
      'id: x\nurl: null\nas_token: a\nhs_token: h\nsender_localpart: x\nreceive_ephemeral: true\nrate_limited: false\n',
      'test.local',
    );
    assert.equal(as.url, null);
    assert.equal(as.receiveEphemeral, true);
    assert.equal(as.rateLimited, false);
    assert.deepEqual(as.namespaces, { users: [], aliases: [], rooms: [] });
  });

  const bad: [string, string, RegExp][] = [
    ['missing as_token', GOOD.replace('as_token: as-secret\n', ''), /bad\.yaml: .*as_token/],
    ['url not a string', GOOD.replace('url: http://127.0.0.1:9999', 'url: 5'), /bad\.yaml: .*url/],
    [
      'exclusive missing',
      GOOD.replace('- exclusive: true\n', '- '),
      /bad\.yaml: .*namespaces\.users\[0\]\.exclusive/,
    ],
    [
      'invalid regex',
      GOOD.replace('"#_irc_.*"', '"#_irc_(["'),
      /bad\.yaml: namespaces\.aliases\[0\]\.regex: invalid/,
    ],
    ['rate_limited not a boolean', `${GOOD}rate_limited: maybe\n`, /bad\.yaml: .*rate_limited/],
    ['not YAML', 'id: [', /bad\.yaml: not valid YAML/],
  ];
  for (const [name, text, want] of bad) {
    it(`refuses a registration: ${name}`, () => {
      assert.throws(() => loadAppServices([file('bad.yaml', text)], 'test.local'), want);
    });
  }

  it('refuses duplicate ids and tokens across files, and unreadable files', () => {
    const a = file('a.yaml', GOOD);
    const sameId = file(
      'b.yaml',
      GOOD.replace('as_token: as-secret', 'as_token: other').replace(
        'hs_token: hs-secret',
        'hs_token: other2',
      ),
    );
    assert.throws(
      () => loadAppServices([a, sameId], 'test.local'),
      /b\.yaml: id: irc is already used by .*a\.yaml/,
    );
    const sameToken = file(
      'c.yaml',
      GOOD.replace('id: irc', 'id: other').replace('hs_token: hs-secret', 'hs_token: h2'),
    );
    assert.throws(() => loadAppServices([a, sameToken], 'test.local'), /c\.yaml: as_token: the same token/);
    assert.throws(() => loadAppServices([join(dir, 'nope.yaml')], 'test.local'), /nope\.yaml: ENOENT/);
  });
});

for (const engine of ENGINES) {
  describe(`${engine}: application services at start`, () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'hearth-as-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('a bad registration fails the start naming the file and key', async () => {
      const p = join(dir, 'broken.yaml');
      writeFileSync(p, GOOD.replace('sender_localpart: ircbot\n', ''));
      await assert.rejects(
        startTestServer(engine, { app_service_config_files: [p] }),
        (err: Error) => err.name === 'StartupError' && /broken\.yaml: .*sender_localpart/.test(err.message),
      );
    });

    it('creates the sender user at start, and whoami with the as_token is the sender', async () => {
      const p = join(dir, 'irc.yaml');
      writeFileSync(p, GOOD);
      const server = await startTestServer(engine, { app_service_config_files: [p] });
      try {
        const res = await server.client('as-secret').get('/_matrix/client/v3/account/whoami');
        assert.equal(res.status, 200);
        assert.equal(res.body.user_id, '@ircbot:test.local');
        assert.equal(res.body.device_id, undefined);
        const profile = await server.client().get('/_matrix/client/v3/profile/@ircbot:test.local');
        assert.equal(profile.status, 200);
      } finally {
        await server.close();
      }
    });
  });
}
