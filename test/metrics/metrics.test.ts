import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENGINES } from '../helpers/engines.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** The value of one sample line (`name{labels} value`) in a Prometheus text scrape, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_:]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const set = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return undefined;
}

for (const engine of ENGINES) {
  describe(`metrics and health (${engine})`, () => {
    let ts: TestServer;
    before(async () => {
      ts = await startTestServer(engine, {
        enable_metrics: true,
        listeners: [
          { port: 0, bind_addresses: ['127.0.0.1'] },
          { port: 0, bind_addresses: ['127.0.0.1'], type: 'metrics' },
        ],
      });
    });
    after(() => ts.close());

    const scrape = async (base = ts.url): Promise<string> => {
      const res = await fetch(`${base}/_hearth/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
      return res.text();
    };

    it('exports every family, with moving numbers and no user data', async () => {
      const alice = await ts.user('metricsalice');
      const bob = await ts.user('metricsbob');
      const room = await alice.post('/_matrix/client/v3/createRoom', { preset: 'public_chat' });
      const roomId = room.body.room_id as string;
      await bob.post(`/_matrix/client/v3/join/${encodeURIComponent(roomId)}`);
      const first = await bob.get('/_matrix/client/v3/sync');
      const since = first.body.next_batch as string;
      const before = await scrape();
      // A long-poll, woken by a send.
      const poll = bob.get(`/_matrix/client/v3/sync?since=${since}&timeout=10000`);
      await new Promise((r) => setTimeout(r, 150));
      const mid = await scrape();
      assert.equal(sample(mid, 'hearth_sync_in_flight'), 1);
      assert.equal(sample(mid, 'hearth_notifier_waiters'), 1);
      await alice.put(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t1`, {
        msgtype: 'm.text',
        body: 'secret body text',
      });
      assert.equal((await poll).status, 200);
      await alice.get('/_matrix/client/v3/rooms/!nope:test.local/state');
      const text = await scrape();

      const route = '/_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId';
      assert.ok(sample(text, 'hearth_http_requests_total', { route, method: 'PUT', status: '200' }) === 1);
      assert.ok(sample(text, 'hearth_http_request_duration_seconds_count', { route, method: 'PUT' }) === 1);
      assert.ok((sample(text, 'hearth_events_persisted_total', { type: 'm.room.message' }) ?? 0) >= 1);
      assert.ok((sample(text, 'hearth_events_persisted_total', { type: 'm.room.member' }) ?? 0) >= 2);
      assert.ok((sample(text, 'hearth_persist_duration_seconds_count', { op: 'send' }) ?? 0) >= 2);
      assert.ok(
        (sample(text, 'hearth_db_query_duration_seconds_count', { operation: 'select', table: 'users' }) ??
          0) > 0,
      );
      assert.ok(
        (sample(text, 'hearth_db_query_duration_seconds_count', { operation: 'insert', table: 'events' }) ??
          0) > 0,
      );
      assert.equal(sample(text, 'hearth_sync_wake_latency_seconds_count'), 1);
      assert.ok(
        (sample(text, 'hearth_sync_response_bytes_count') ?? 0) >
          (sample(before, 'hearth_sync_response_bytes_count') ?? 0),
      );
      assert.equal(sample(text, 'hearth_sync_in_flight'), 0);
      assert.ok(sample(text, 'hearth_cache_size', { cache: 'events' }) !== undefined);
      // Events are cached at their commit, so the sync above only hits the cache; misses are exported all the same.
      assert.ok((sample(text, 'hearth_cache_hits_total', { cache: 'events' }) ?? 0) > 0);
      assert.ok(sample(text, 'hearth_cache_misses_total', { cache: 'events' }) !== undefined);
      assert.ok(sample(text, 'hearth_cache_hits_total', { cache: 'state_snapshots' }) !== undefined);
      assert.ok(sample(text, 'hearth_to_device_queue_depth') !== undefined);
      assert.match(text, /# TYPE hearth_damaged_rows_skipped_total counter/);
      assert.match(text, /# TYPE hearth_events_quarantined gauge/);
      assert.match(text, /# TYPE hearth_cache_mismatches gauge/);
      assert.ok((sample(text, 'process_resident_memory_bytes') ?? 0) > 0);
      assert.match(text, /^nodejs_eventloop_lag_seconds /m);
      assert.match(text, /# TYPE nodejs_gc_duration_seconds histogram/);

      // No user data: no user ids, room ids, tokens or bodies; the unknown room's URL appears only as its template.
      for (const secret of [
        alice.userId,
        bob.userId,
        roomId,
        '!nope',
        alice.token ?? '',
        'secret body text',
      ]) {
        assert.ok(!text.includes(secret), `scrape exposes ${secret}`);
      }
      assert.equal((await fetch(`${ts.url}/_synapse/metrics`)).status, 200);
    });

    it('a metrics listener serves metrics and health only', async () => {
      const metricsUrl = ts.hs.urls[1] as string;
      assert.match(await scrape(metricsUrl), /hearth_http_requests_total/);
      assert.equal((await fetch(`${metricsUrl}/health`)).status, 200);
      assert.equal((await fetch(`${metricsUrl}/_matrix/client/versions`)).status, 404);
    });

    it('GET /health answers 200 while the database answers', async () => {
      const ok = await fetch(`${ts.url}/health`);
      assert.equal(ok.status, 200);
      assert.equal(await ok.text(), 'OK');
    });
  });
}

describe('health with a dead database', () => {
  it('answers 503', async () => {
    const ts = await startTestServer('sqlite');
    try {
      await ts.hs.storage.db.destroy();
      const res = await fetch(`${ts.url}/health`);
      assert.equal(res.status, 503);
    } finally {
      await ts.close().catch(() => undefined);
    }
  });
});
