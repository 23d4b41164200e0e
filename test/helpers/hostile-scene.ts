/**
 * The stage of the hostile-server tests: Hearth A (alice, the room's creator), Hearth B (bob, an honest peer joined
 * over federation) and a hostile server (eve and mallory joined with make_join/send_join) in one public room of
 * room version 12. Helpers build the hostile server's events over A's current head, read what alice sees through the
 * client API, check that the honest peer's next message still lands, and run the doctor.
 */
import assert from 'node:assert/strict';
import { runDoctor } from '../../src/integrity/doctor.js';
import { authEventTypesFor } from '../../src/rooms/auth/auth-events.js';
import type { JsonObject } from '../../src/rooms/event.js';
import { getEventRowById } from '../../src/storage/events.js';
import { stateKey } from '../../src/storage/state.js';
import type { Engine } from '../../src/storage/dialect.js';
import { startFederatedServer, type FederatedServer } from './federation.js';
import { HostileServer, type Signer } from './hostile-server.js';
import type { Client, Json } from './server.js';
import { until } from './until.js';
export { until };

export type User = Client & { userId: string; deviceId: string };

export const ROOM_VERSION = '12';

export interface EventSpec {
  type: string;
  content: JsonObject;
  state_key?: string;
  sender?: string;
}

export interface BuildOpts {
  prev?: string[];
  auth?: string[];
  depth?: number;
  ts?: number;
  signer?: Signer;
  roomId?: string;
}

export class HostileScene {
  a!: FederatedServer;
  b!: FederatedServer;
  hostile = new HostileServer();
  alice!: User;
  bob!: User;
  roomId!: string;
  eve!: string;
  mallory!: string;
  #honest = 0;

  async start(engine: Engine): Promise<void> {
    await this.hostile.start();
    [this.a, this.b] = await Promise.all([startFederatedServer(engine), startFederatedServer(engine)]);
    this.alice = await this.a.user('alice');
    this.bob = await this.b.user('bob');
    const created = await this.alice.post('/_matrix/client/v3/createRoom', {
      preset: 'public_chat',
      room_version: ROOM_VERSION,
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    this.roomId = created.body.room_id as string;
    const joined = await this.bob.post(
      `/_matrix/client/v3/join/${this.r}?server_name=${encodeURIComponent(this.a.serverName)}`,
    );
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    this.eve = `@eve:${this.hostile.serverName}`;
    this.mallory = `@mallory:${this.hostile.serverName}`;
    await this.hostile.join(this.a.serverName, this.roomId, this.eve);
    await this.hostile.join(this.a.serverName, this.roomId, this.mallory);
    await this.honestLands();
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.a?.close(), this.b?.close(), this.hostile.stop()]);
  }

  get r(): string {
    return encodeURIComponent(this.roomId);
  }

  /** A hostile event over A's current head (or over `opts.prev`), signed by the hostile server. */
  async build(t: EventSpec, opts: BuildOpts = {}): Promise<{ eventId: string; pdu: JsonObject }> {
    const roomId = opts.roomId ?? this.roomId;
    const head = await this.a.hs.writer.head(roomId);
    assert.ok(head, `A has no room ${roomId}`);
    const sender = t.sender ?? this.eve;
    const prev = opts.prev ?? head.extremities.map((e) => e.eventId);
    let depth = 0;
    for (const p of prev) {
      const row = await getEventRowById(this.a.hs.storage.db, p);
      depth = Math.max(depth, Number(row?.depth ?? 0));
    }
    const auth =
      opts.auth ??
      authEventTypesFor({ ...t, sender }, ROOM_VERSION)
        .map(([ty, k]) => head.state.get(stateKey(ty, k))?.eventId)
        .filter((x): x is string => x !== undefined);
    return this.hostile.build(
      {
        ...t,
        sender,
        room_id: roomId,
        prev_events: prev,
        auth_events: auth,
        depth: opts.depth ?? depth + 1,
        origin_server_ts: opts.ts ?? Date.now(),
      },
      ROOM_VERSION,
      opts.signer,
    );
  }

  /** A message of eve (or `sender`) over A's current head. */
  message(body: string, opts: BuildOpts & { sender?: string } = {}) {
    return this.build(
      {
        type: 'm.room.message',
        content: { msgtype: 'm.text', body },
        ...(opts.sender ? { sender: opts.sender } : {}),
      },
      opts,
    );
  }

  /** /send from the hostile server to A; returns the status and the per-PDU results. */
  async send(pdus: unknown[], edus: unknown[] = []) {
    const res = await this.hostile.send(this.a.serverName, `t${Date.now()}-${Math.random()}`, pdus, edus);
    return {
      status: res.status,
      body: res.body as Json,
      pdus: (res.body as { pdus?: Record<string, { error?: string }> })?.pdus ?? {},
    };
  }

  /** The event ids alice sees in the room: /messages (100 back), a fresh /sync timeline and the state. */
  async seenByAlice(): Promise<{ messages: string[]; sync: string[]; state: string[] }> {
    const msgs = await this.alice.get(`/_matrix/client/v3/rooms/${this.r}/messages?dir=b&limit=100`);
    assert.equal(msgs.status, 200);
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 100 } } }));
    const sync = await this.alice.get(`/_matrix/client/v3/sync?timeout=0&filter=${filter}`);
    assert.equal(sync.status, 200);
    const room = (sync.body.rooms as { join?: Record<string, { timeline: { events: Json[] } }> }).join?.[
      this.roomId
    ];
    const state = await this.alice.get(`/_matrix/client/v3/rooms/${this.r}/state`);
    assert.equal(state.status, 200);
    const ids = (list: Json[] | undefined) => (list ?? []).map((e) => e.event_id as string);
    return {
      messages: ids(msgs.body.chunk as Json[]),
      sync: ids(room?.timeline.events),
      state: ids(state.body as unknown as Json[]),
    };
  }

  /** Alice sees none of these events anywhere, and /event answers 404 for each. */
  async invisible(...eventIds: string[]): Promise<void> {
    const seen = await this.seenByAlice();
    for (const id of eventIds) {
      assert.ok(!seen.messages.includes(id), `${id} in /messages`);
      assert.ok(!seen.sync.includes(id), `${id} in /sync`);
      assert.ok(!seen.state.includes(id), `${id} in /state`);
      const got = await this.alice.get(`/_matrix/client/v3/rooms/${this.r}/event/${encodeURIComponent(id)}`);
      assert.equal(got.status, 404, `${id} served by /event`);
    }
  }

  /** The room's current state as alice reads it: `type|state_key` → event id. */
  async currentState(): Promise<Map<string, string>> {
    const res = await this.alice.get(`/_matrix/client/v3/rooms/${this.r}/state`);
    assert.equal(res.status, 200);
    return new Map(
      (res.body as unknown as Json[]).map((e) => [
        `${String(e.type)}|${String(e.state_key)}`,
        e.event_id as string,
      ]),
    );
  }

  /** Bob (the honest peer on B) says something, and alice sees it on A. */
  async honestLands(): Promise<void> {
    const body = `honest ${++this.#honest}`;
    const sent = await this.bob.put(
      `/_matrix/client/v3/rooms/${this.r}/send/m.room.message/h${this.#honest}`,
      { msgtype: 'm.text', body },
    );
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const id = sent.body.event_id as string;
    await until(`bob's "${body}" on A`, async () =>
      (await this.seenByAlice()).messages.includes(id) ? true : undefined,
    );
  }

  /** The doctor finds nothing wrong on A (every room). */
  async doctorClean(): Promise<void> {
    const report = await runDoctor(this.a.hs.storage, {
      exclusive: (id, fn) => this.a.hs.writer.runExclusive(id, fn),
    });
    assert.deepEqual(report.problems, []);
  }

  /** A's stored row of an event. */
  row(eventId: string) {
    return getEventRowById(this.a.hs.storage.db, eventId);
  }
}
