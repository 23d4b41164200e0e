/**
 * The push sender: after a room commit, every local user with an http pusher who is joined to the room (or is
 * invited by the batch) and did not send the event has their push rules evaluated; when the actions notify, the
 * push gateway's POST /_matrix/push/v1/notify is called for each of their pushers (push gateway API, v1.19).
 * Fire-and-forget: the writer never waits, each request has a timeout and failures are logged. Pushkeys the
 * gateway rejects are removed, as Synapse does. A user who ignores the sender (`m.ignored_user_list`) gets no push
 * for the event, state events included, as Synapse's bulk push rule evaluator skips them; the unread count sent
 * along leaves out the ignored users' events as /sync's does. The list is read through the per-user exclusions
 * cache (storage/sync-exclusions.ts), which a write of the list clears.
 */
import type { Logger } from 'pino';
import { loadPushRules } from './rules-store.js';
import type { CommittedBatch, PersistedEvent } from '../input/room-writer.js';
import type { EventReader, LoadedEvent } from '../read/event-reader.js';
import type { Storage } from '../storage/db.js';
import { syncExclusions } from '../storage/sync-exclusions.js';
import { writeGeneration } from '../storage/write-watch.js';
import { unreadCounts } from '../sync/unread.js';
import type { PushAction } from './default-rules.js';
import { evaluateForUser, loadRoomPushFacts } from './room-push.js';

export const PUSH_TIMEOUT_MS = 10_000;

export interface PushSenderDeps {
  storage: Storage;
  reader: EventReader;
  log: Logger;
  /** For tests. */
  fetch?: typeof fetch;
  timeoutMs?: number;
}

interface PusherRow {
  user_id: string;
  app_id: string;
  pushkey: string;
  data: string;
  created_ts: number;
  membership: string;
  stream_ordering: number;
}

interface RoomLabels {
  name?: string;
  alias?: string;
}

function tweaksOf(actions: PushAction[]): Record<string, unknown> {
  const tweaks: Record<string, unknown> = {};
  for (const a of actions) {
    if (typeof a === 'object' && typeof a.set_tweak === 'string') {
      tweaks[a.set_tweak] = a.value === undefined && a.set_tweak === 'highlight' ? true : a.value;
    }
  }
  return tweaks;
}

export class PushSender {
  #inflight = new Set<Promise<void>>();
  #closed = false;
  /** Whether any http pusher exists, with the `pushers` write generation it was read at. */
  #anyPushers: { generation: number; any: boolean } | undefined;

  constructor(private readonly deps: PushSenderDeps) {}

  /** A RoomWriter commit listener. */
  readonly onCommit = (batch: CommittedBatch): void => {
    if (this.#closed || batch.events.length === 0) return;
    const p = this.#handle(batch).catch((err: unknown) => {
      this.deps.log.warn({ err, roomId: batch.roomId }, 'push: evaluating a commit failed');
    });
    this.#inflight.add(p);
    void p.finally(() => this.#inflight.delete(p));
  };

  /** Stops taking commits and waits for the pushes in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#inflight.size) await Promise.allSettled([...this.#inflight]);
  }

  /** Most servers' rooms have no pushers at all: one cached answer spares every commit its query. */
  async #anyHttpPushers(): Promise<boolean> {
    const generation = writeGeneration('pushers');
    if (this.#anyPushers?.generation === generation) return this.#anyPushers.any;
    const row = await this.deps.storage.db
      .selectFrom('pushers')
      .select('user_id')
      .where('kind', '=', 'http')
      .limit(1)
      .executeTakeFirst();
    // A pusher write while this read ran: answer it, but read again next time.
    if (writeGeneration('pushers') === generation) this.#anyPushers = { generation, any: row !== undefined };
    return row !== undefined;
  }

  async #handle(batch: CommittedBatch): Promise<void> {
    const { db } = this.deps.storage;
    if (!(await this.#anyHttpPushers())) return;
    const invitees = batch.events
      .filter((e) => e.pdu.type === 'm.room.member' && e.pdu.content.membership === 'invite')
      .map((e) => e.pdu.state_key)
      .filter((s): s is string => typeof s === 'string');
    const rows = (await db
      .selectFrom('pushers as p')
      .innerJoin('room_members as m', 'm.user_id', 'p.user_id')
      .innerJoin('rooms as r', 'r.room_nid', 'm.room_nid')
      .select([
        'p.user_id',
        'p.app_id',
        'p.pushkey',
        'p.data',
        'p.created_ts',
        'm.membership',
        'm.stream_ordering',
        'r.room_nid',
        'r.room_version',
      ])
      .where('r.room_id', '=', batch.roomId)
      .where('p.kind', '=', 'http')
      .where((eb) =>
        eb.or([
          eb('m.membership', '=', 'join'),
          ...(invitees.length
            ? [eb.and([eb('m.membership', '=', 'invite'), eb('m.user_id', 'in', invitees)])]
            : []),
        ]),
      )
      .execute()) as (PusherRow & { room_nid: number; room_version: string })[];
    if (rows.length === 0) return;
    const roomNid = Number(rows[0]!.room_nid);
    const roomVersion = rows[0]!.room_version;
    const byUser = new Map<string, PusherRow[]>();
    for (const r of rows) byUser.set(r.user_id, [...(byUser.get(r.user_id) ?? []), r]);
    const senders = [...new Set(batch.events.map((e) => e.pdu.sender))];
    const facts = await loadRoomPushFacts(db, this.deps.reader, roomNid, [...byUser.keys(), ...senders]);
    const loaded = batch.events.map((e) => this.#loaded(e, roomNid, roomVersion));
    let room: Promise<RoomLabels> | undefined;
    for (const [userId, pushers] of byUser) {
      const [rules, { ignored }] = await Promise.all([
        loadPushRules(this.deps.storage, userId),
        syncExclusions(db, userId),
      ]);
      for (const ev of loaded) {
        if (ignored.has(ev.pdu.sender)) continue;
        const outcome = evaluateForUser(ev, userId, rules, facts);
        if (!outcome?.notify) continue;
        const counts = await unreadCounts(
          {
            db,
            reader: this.deps.reader,
            rules: () => Promise.resolve(rules),
            ignored: () => Promise.resolve(ignored),
          },
          roomNid,
          userId,
          Number(pushers[0]!.stream_ordering),
          ev.streamOrdering ?? Number.MAX_SAFE_INTEGER,
        );
        for (const pusher of pushers) {
          this.#send(userId, pusher, ev, outcome.actions, {
            ...(await (room ??= this.#labels(roomNid))),
            senderName: facts.displayNames.get(ev.pdu.sender) ?? null,
            counts: { unread: counts.notification_count },
          });
        }
      }
    }
  }

  /** The room's name and canonical alias, for the full notification format. */
  async #labels(roomNid: number): Promise<RoomLabels> {
    const rows = await this.deps.storage.db
      .selectFrom('current_state')
      .select(['type', 'event_nid'])
      .where('room_nid', '=', roomNid)
      .where('type', 'in', ['m.room.name', 'm.room.canonical_alias'])
      .where('state_key', '=', '')
      .execute();
    const events = await this.deps.reader.byNids(rows.map((r) => Number(r.event_nid)));
    const out: RoomLabels = {};
    for (const r of rows) {
      const ev = events.get(Number(r.event_nid));
      if (!ev || ev.redactedBy) continue;
      const content = ev.pdu.content;
      if (r.type === 'm.room.name' && typeof content.name === 'string' && content.name !== '') {
        out.name = content.name;
      }
      if (r.type === 'm.room.canonical_alias' && typeof content.alias === 'string') out.alias = content.alias;
    }
    return out;
  }

  #loaded(e: PersistedEvent, roomNid: number, roomVersion: string): LoadedEvent {
    return {
      nid: e.eventNid,
      roomNid,
      eventId: e.eventId,
      roomId: e.roomId,
      roomVersion,
      pdu: e.pdu,
      streamOrdering: e.streamOrdering,
      stateSnapshotNid: null,
      redactedBy: null,
    };
  }

  #send(
    userId: string,
    pusher: PusherRow,
    ev: LoadedEvent,
    actions: PushAction[],
    labels: RoomLabels & { senderName: string | null; counts: { unread: number } },
  ): void {
    const { senderName, counts } = labels;
    let data: Record<string, unknown>;
    try {
      data = JSON.parse(pusher.data) as Record<string, unknown>;
    } catch {
      return;
    }
    const { url, ...forwarded } = data;
    if (typeof url !== 'string') return;
    const tweaks = tweaksOf(actions);
    const prio =
      ev.pdu.type === 'm.room.encrypted' || tweaks.highlight === true || tweaks.sound !== undefined
        ? 'high'
        : 'low';
    const device = {
      app_id: pusher.app_id,
      pushkey: pusher.pushkey,
      pushkey_ts: Math.floor(Number(pusher.created_ts) / 1000),
      data: forwarded,
      tweaks,
    };
    const notification: Record<string, unknown> =
      data.format === 'event_id_only'
        ? { event_id: ev.eventId, room_id: ev.roomId, counts, prio, devices: [device] }
        : {
            event_id: ev.eventId,
            room_id: ev.roomId,
            type: ev.pdu.type,
            sender: ev.pdu.sender,
            ...(senderName !== null ? { sender_display_name: senderName } : {}),
            ...(labels.name !== undefined ? { room_name: labels.name } : {}),
            ...(labels.alias !== undefined ? { room_alias: labels.alias } : {}),
            ...(ev.pdu.type === 'm.room.member' ? { user_is_target: ev.pdu.state_key === userId } : {}),
            prio,
            content: ev.pdu.content,
            counts,
            devices: [device],
          };
    const p = this.#post(userId, pusher, url, { notification });
    this.#inflight.add(p);
    void p.finally(() => this.#inflight.delete(p));
  }

  async #post(userId: string, pusher: PusherRow, url: string, body: unknown): Promise<void> {
    const doFetch = this.deps.fetch ?? fetch;
    try {
      const res = await doFetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.deps.timeoutMs ?? PUSH_TIMEOUT_MS),
      });
      const text = await res.text();
      if (!res.ok) {
        this.deps.log.warn({ userId, appId: pusher.app_id, status: res.status }, 'push: gateway refused');
        return;
      }
      let rejected: unknown;
      try {
        rejected = (JSON.parse(text) as { rejected?: unknown }).rejected;
      } catch {
        rejected = undefined;
      }
      if (Array.isArray(rejected) && rejected.includes(pusher.pushkey) && !this.#closed) {
        await this.deps.storage.db
          .deleteFrom('pushers')
          .where('user_id', '=', userId)
          .where('app_id', '=', pusher.app_id)
          .where('pushkey', '=', pusher.pushkey)
          .execute();
        this.deps.log.info(
          { userId, appId: pusher.app_id },
          'push: gateway rejected the pushkey; pusher removed',
        );
      }
    } catch (err) {
      this.deps.log.warn({ err, userId, appId: pusher.app_id }, 'push: sending to the gateway failed');
    }
  }
}
