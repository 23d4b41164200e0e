/**
 * Pure federation helpers, without a network: server discovery in the spec's order with a fake resolver and clock,
 * the well-known cache and its backoff, X-Matrix header parsing and signing, the IP range policy and server names.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_IP_RANGE_BLACKLIST } from '../../src/config/schema.js';
import { cacheControlMaxAgeMs } from '../../src/federation/client.js';
import { AddressPolicy, embeddedIpv4 } from '../../src/federation/ip-ranges.js';
import {
  ServerResolver,
  WELL_KNOWN_DEFAULT_CACHE_MS,
  WELL_KNOWN_FAILURE_CACHE_MS,
  WELL_KNOWN_MAX_CACHE_MS,
  WELL_KNOWN_MAX_FAILURE_CACHE_MS,
  type SrvRecord,
  type WellKnownAnswer,
} from '../../src/federation/resolver.js';
import { formatHostPort, parseServerName } from '../../src/federation/server-name.js';
import { parseXMatrix, signRequest, verifyRequest } from '../../src/federation/x-matrix.js';
import { generateSigningSeed, publicKeyBase64FromSeed } from '../../src/rooms/signing.js';

type WellKnown = WellKnownAnswer | Error;

function setup(
  opts: { wellKnown?: Record<string, WellKnown>; srv?: Record<string, Partial<SrvRecord>[]> } = {},
): { resolver: ServerResolver; wellKnownCalls: string[]; srvCalls: string[]; clock: { now: number } } {
  const wellKnownCalls: string[] = [];
  const srvCalls: string[] = [];
  const clock = { now: 1_000_000 };
  const resolver = new ServerResolver({
    now: () => clock.now,
    dns: {
      lookup: async () => [{ address: '192.0.2.1', family: 4 }],
      resolveSrv: async (name) => {
        srvCalls.push(name);
        return (opts.srv?.[name] ?? []).map((r) => ({ name: 'x', port: 1, priority: 0, weight: 0, ...r }));
      },
    },
    fetchWellKnown: async (host) => {
      wellKnownCalls.push(host);
      const a = opts.wellKnown?.[host] ?? new Error('404');
      if (a instanceof Error) throw a;
      return a;
    },
  });
  return { resolver, wellKnownCalls, srvCalls, clock };
}

describe('server discovery', () => {
  it('1. an IP literal: its port or 8448, Host the server name, no well-known or SRV', async () => {
    const { resolver, wellKnownCalls, srvCalls } = setup();
    assert.deepEqual(await resolver.resolve('192.0.2.5'), {
      hostHeader: '192.0.2.5',
      tlsName: '192.0.2.5',
      targets: [{ host: '192.0.2.5', port: 8448 }],
    });
    assert.deepEqual(await resolver.resolve('[2001:db8::1]:8449'), {
      hostHeader: '[2001:db8::1]:8449',
      tlsName: '2001:db8::1',
      targets: [{ host: '2001:db8::1', port: 8449 }],
    });
    assert.deepEqual([wellKnownCalls, srvCalls], [[], []]);
  });

  it('2. a host name with a port: straight to it, Host with the port, certificate for the host', async () => {
    const { resolver, wellKnownCalls } = setup({
      wellKnown: { 'hs.example': { server: 'other.example:1' } },
    });
    assert.deepEqual(await resolver.resolve('hs.example:8000'), {
      hostHeader: 'hs.example:8000',
      tlsName: 'hs.example',
      targets: [{ host: 'hs.example', port: 8000 }],
    });
    assert.deepEqual(wellKnownCalls, []);
  });

  it('3.1 / 3.2 well-known delegation to an IP literal or a host with a port', async () => {
    const { resolver } = setup({
      wellKnown: { 'a.example': { server: '192.0.2.9' }, 'b.example': { server: 'deleg.example:4443' } },
      srv: { '_matrix-fed._tcp.deleg.example': [{ name: 'never.example', port: 1 }] },
    });
    assert.deepEqual(await resolver.resolve('a.example'), {
      hostHeader: '192.0.2.9',
      tlsName: '192.0.2.9',
      targets: [{ host: '192.0.2.9', port: 8448 }],
    });
    assert.deepEqual(await resolver.resolve('b.example'), {
      hostHeader: 'deleg.example:4443',
      tlsName: 'deleg.example',
      targets: [{ host: 'deleg.example', port: 4443 }],
    });
  });

  it('3.3 / 3.4 / 3.5 a delegated host without port: _matrix-fed SRV, then _matrix SRV, then 8448', async () => {
    const { resolver, srvCalls } = setup({
      wellKnown: {
        'fed.example': { server: 'd1.example' },
        'old.example': { server: 'd2.example' },
        'none.example': { server: 'd3.example' },
      },
      srv: {
        '_matrix-fed._tcp.d1.example': [
          { name: 'backup.d1.example.', port: 9000, priority: 20 },
          { name: 'light.d1.example.', port: 8001, priority: 10, weight: 1 },
          { name: 'heavy.d1.example.', port: 8002, priority: 10, weight: 50 },
        ],
        '_matrix._tcp.d1.example': [{ name: 'never.example', port: 1 }],
        '_matrix._tcp.d2.example': [{ name: 'legacy.d2.example', port: 8500 }],
      },
    });
    assert.deepEqual(await resolver.resolve('fed.example'), {
      hostHeader: 'd1.example',
      tlsName: 'd1.example',
      targets: [
        { host: 'heavy.d1.example', port: 8002 },
        { host: 'light.d1.example', port: 8001 },
        { host: 'backup.d1.example', port: 9000 },
      ],
    });
    assert.deepEqual(await resolver.resolve('old.example'), {
      hostHeader: 'd2.example',
      tlsName: 'd2.example',
      targets: [{ host: 'legacy.d2.example', port: 8500 }],
    });
    assert.deepEqual(await resolver.resolve('none.example'), {
      hostHeader: 'd3.example',
      tlsName: 'd3.example',
      targets: [{ host: 'd3.example', port: 8448 }],
    });
    assert.deepEqual(srvCalls, [
      '_matrix-fed._tcp.d1.example',
      '_matrix-fed._tcp.d2.example',
      '_matrix._tcp.d2.example',
      '_matrix-fed._tcp.d3.example',
      '_matrix._tcp.d3.example',
    ]);
  });

  it('4 / 5 / 6 without well-known: SRV of the server name (Host and certificate stay the server name), then 8448', async () => {
    const { resolver } = setup({
      srv: {
        '_matrix-fed._tcp.s1.example': [{ name: 'fed.s1.example', port: 8111 }],
        '_matrix._tcp.s2.example': [{ name: 'old.s2.example', port: 8222 }],
      },
      wellKnown: { 'bad.example': { server: 'not a server name!' } },
    });
    assert.deepEqual(await resolver.resolve('s1.example'), {
      hostHeader: 's1.example',
      tlsName: 's1.example',
      targets: [{ host: 'fed.s1.example', port: 8111 }],
    });
    assert.deepEqual((await resolver.resolve('s2.example')).targets, [
      { host: 'old.s2.example', port: 8222 },
    ]);
    assert.deepEqual(await resolver.resolve('s3.example'), {
      hostHeader: 's3.example',
      tlsName: 's3.example',
      targets: [{ host: 's3.example', port: 8448 }],
    });
    // An invalid m.server is an error response: the server name's own SRV and 8448 follow.
    assert.deepEqual((await resolver.resolve('bad.example')).targets, [{ host: 'bad.example', port: 8448 }]);
  });

  it('caches well-known answers for their max-age (24 h by default, at most 48 h)', async () => {
    const { resolver, wellKnownCalls, clock } = setup({
      wellKnown: {
        'd.example': { server: 'deleg.example:1' },
        'm.example': { server: 'deleg.example:2', maxAgeMs: 60_000 },
        'x.example': { server: 'deleg.example:3', maxAgeMs: 30 * 86_400_000 },
      },
    });
    for (const name of ['d.example', 'm.example', 'x.example']) await resolver.resolve(name);
    clock.now += 61_000;
    for (const name of ['d.example', 'm.example', 'x.example']) await resolver.resolve(name);
    assert.deepEqual(wellKnownCalls, ['d.example', 'm.example', 'x.example', 'm.example']);
    clock.now += WELL_KNOWN_DEFAULT_CACHE_MS;
    await resolver.resolve('d.example');
    clock.now += WELL_KNOWN_MAX_CACHE_MS - WELL_KNOWN_DEFAULT_CACHE_MS;
    await resolver.resolve('x.example');
    assert.deepEqual(wellKnownCalls.slice(4), ['d.example', 'x.example']);
  });

  it('caches failures with an exponential backoff up to an hour, and shares one fetch between concurrent lookups', async () => {
    const { resolver, wellKnownCalls, clock } = setup();
    await Promise.all([resolver.resolve('down.example'), resolver.resolve('down.example')]);
    assert.equal(wellKnownCalls.length, 1, 'one fetch for concurrent lookups');
    let wait = WELL_KNOWN_FAILURE_CACHE_MS;
    for (let i = 0; i < 8; i++) {
      clock.now += wait - 1;
      await resolver.resolve('down.example');
      assert.equal(wellKnownCalls.length, i + 1, `cached for ${wait} ms after failure ${i + 1}`);
      clock.now += 1;
      await resolver.resolve('down.example');
      assert.equal(wellKnownCalls.length, i + 2);
      wait = Math.min(wait * 2, WELL_KNOWN_MAX_FAILURE_CACHE_MS);
    }
    assert.equal(wait, WELL_KNOWN_MAX_FAILURE_CACHE_MS);
  });

  it('reads max-age from Cache-Control', () => {
    assert.equal(cacheControlMaxAgeMs('public, max-age=3600'), 3_600_000);
    assert.equal(cacheControlMaxAgeMs('no-store'), 0);
    assert.equal(cacheControlMaxAgeMs(undefined), undefined);
    assert.equal(cacheControlMaxAgeMs('private'), undefined);
  });
});

describe('X-Matrix header', () => {
  const seed = generateSigningSeed();
  const pub = publicKeyBase64FromSeed(seed);
  const req = {
    method: 'PUT',
    uri: '/_matrix/federation/v1/send/1?x=1',
    origin: 'origin.example',
    destination: 'dest.example',
    content: { pdus: [], edus: [{ edu_type: 'm.typing', content: { é: 1 } }] },
  };

  it('signs as the spec asks senders to write it, and verifies over method, URI, origin, destination and body', () => {
    const h = signRequest(req, 'ed25519:k1', seed);
    assert.match(
      h,
      /^X-Matrix origin="origin\.example",destination="dest\.example",key="ed25519:k1",sig="[^"]+"$/,
    );
    const p = parseXMatrix(h);
    assert.ok(p);
    assert.ok(verifyRequest(req, p, pub));
    assert.ok(!verifyRequest({ ...req, content: { pdus: [1] } }, p, pub), 'body');
    assert.ok(!verifyRequest({ ...req, uri: '/_matrix/federation/v1/send/2?x=1' }, p, pub), 'uri');
    assert.ok(!verifyRequest({ ...req, method: 'POST' }, p, pub), 'method');
    assert.ok(!verifyRequest({ ...req, destination: 'other.example' }, p, pub), 'destination');
    assert.ok(!verifyRequest(req, p, publicKeyBase64FromSeed(generateSigningSeed())), 'key');
    const { content: _content, ...bodiless } = req;
    const g = parseXMatrix(signRequest(bodiless, 'ed25519:k1', seed));
    assert.ok(g && verifyRequest(bodiless, g, pub) && !verifyRequest({ ...bodiless, content: {} }, g, pub));
  });

  it('parses RFC 9110 auth-params: any case and order, spaces, escapes, unquoted values with colons', () => {
    assert.deepEqual(
      parseXMatrix(
        'x-matrix  Key="ed25519:a" , SIG="s\\"ig",origin=o.example:8448,\tdestination="d\\\\x",extra=1',
      ),
      { origin: 'o.example:8448', destination: 'd\\x', key: 'ed25519:a', sig: 's"ig' },
    );
    assert.equal(parseXMatrix('X-Matrix origin="o",key="k"')?.sig, undefined);
    assert.equal(parseXMatrix('Bearer origin="o",key="k",sig="s"'), null);
    assert.equal(parseXMatrix('X-Matrix origin="o",key="k",sig="s"')?.destination, undefined);
  });
});

describe('ip_range_blacklist', () => {
  const policy = new AddressPolicy(DEFAULT_IP_RANGE_BLACKLIST, []);

  it('refuses private, loopback, link-local and unspecified addresses, also inside IPv6 forms', () => {
    for (const ip of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.1.1',
      '100.64.0.1',
      '0.0.0.0',
      '::',
      '::1',
      'fe80::1',
      'fd00::1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::127.0.0.1',
      '2002:7f00:1::1',
      '::ffff:10.0.0.1',
    ])
      assert.equal(policy.allows(ip), false, ip);
    for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700::1111', '::ffff:8.8.8.8'])
      assert.equal(policy.allows(ip), true, ip);
    assert.equal(embeddedIpv4('2002:c000:0201::'), '192.0.2.1');
  });

  it('lets ip_range_whitelist through, and 0.0.0.0 stays refused even with an empty blacklist', () => {
    const open = new AddressPolicy(DEFAULT_IP_RANGE_BLACKLIST, ['127.0.0.1', '10.0.0.0/8']);
    assert.ok(open.allows('127.0.0.1') && open.allows('10.9.9.9') && open.allows('::ffff:127.0.0.1'));
    assert.ok(!open.allows('127.0.0.2') && !open.allows('192.168.0.1'));
    const none = new AddressPolicy([], []);
    assert.ok(none.allows('127.0.0.1') && !none.allows('0.0.0.0') && !none.allows('::'));
  });
});

describe('server names', () => {
  it('splits host and port and recognises IP literals', () => {
    assert.deepEqual(parseServerName('example.org'), { host: 'example.org', port: undefined, ipVersion: 0 });
    assert.deepEqual(parseServerName('example.org:8448'), { host: 'example.org', port: 8448, ipVersion: 0 });
    assert.deepEqual(parseServerName('1.2.3.4:80'), { host: '1.2.3.4', port: 80, ipVersion: 4 });
    assert.deepEqual(parseServerName('[::1]'), { host: '::1', port: undefined, ipVersion: 6 });
    assert.equal(parseServerName('bad name'), null);
    assert.equal(parseServerName('[nothex]:1'), null);
    assert.equal(formatHostPort('::1', 8448), '[::1]:8448');
    assert.equal(formatHostPort('example.org'), 'example.org');
  });
});
