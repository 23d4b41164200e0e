/**
 * Typed view of the database schema (Kysely). Every table lives here; migrations under migrations/ create them.
 * Flags are integers (0/1) so that both engines bind and return the same values.
 */
import type { Generated, Insertable, Selectable } from 'kysely';

export interface UsersTable {
  user_id: string;
  password_hash: string | null;
  is_admin: number;
  is_guest: number;
  deactivated: number;
  locked: number;
  created_ts: number;
  displayname: string | null;
  avatar_url: string | null;
  user_type: string | null;
}

export interface DevicesTable {
  user_id: string;
  device_id: string;
  display_name: string | null;
  created_ts: number;
  last_seen_ts: number | null;
  last_seen_ip: string | null;
  last_seen_user_agent: string | null;
}

export interface AccessTokensTable {
  id: Generated<number>;
  token_hash: string;
  user_id: string;
  device_id: string;
  created_ts: number;
  expires_ts: number | null;
  refresh_token_id: number | null;
}

export interface RefreshTokensTable {
  id: Generated<number>;
  token_hash: string;
  user_id: string;
  device_id: string;
  created_ts: number;
  expires_ts: number | null;
}

export interface AccountDataTable {
  user_id: string;
  /** '' for global account data. */
  room_id: string;
  type: string;
  content: string;
  stream_pos: number;
}

export interface FiltersTable {
  user_id: string;
  filter_id: number;
  filter_json: string;
}

export interface UiaSessionsTable {
  session_id: string;
  created_ts: number;
  /** JSON array of completed stage types. */
  completed: string;
  /** method + path the session was started for; a session cannot be reused for another operation. */
  request_key: string;
  user_id: string | null;
  /** JSON object: the parameters of the request that started the session (the body minus `auth` and secrets). */
  params: Generated<string>;
  /** JSON object: data the operation attached to the session (the registered user id, a password hash). */
  data: Generated<string>;
}

export interface OpenidTokensTable {
  /** sha256 of the token, as access tokens are stored. */
  token_hash: string;
  user_id: string;
  expires_ts: number;
}

export interface RegistrationTokensTable {
  token: string;
  uses_allowed: number | null;
  pending: number;
  completed: number;
  expiry_time: number | null;
}

/** Uploaded media. media_length is null until the content of an async upload (/create) has arrived. */
export interface MediaTable {
  media_id: string;
  user_id: string;
  created_ts: number;
  media_type: string | null;
  media_length: number | null;
  upload_name: string | null;
  /** An async upload's deadline for its content; null once uploaded. */
  unused_expires_at: number | null;
  /** 1 when uploaded while authenticated media was enforced: the legacy unauthenticated endpoints refuse it. */
  authenticated: number;
  quarantined_by: string | null;
  safe_from_quarantine: number;
  last_access_ts: number | null;
  sha256: string | null;
}

/** A cached thumbnail, keyed by the parameters it was made for. */
export interface MediaThumbnailsTable {
  media_id: string;
  width: number;
  height: number;
  method: string;
  animated: number;
  content_type: string;
  length: number;
  created_ts: number;
}

/** A cached copy of another server's media, keyed by (media_origin, media_id); its file is named by filesystem_id. */
export interface RemoteMediaCacheTable {
  media_origin: string;
  media_id: string;
  media_type: string;
  media_length: number;
  upload_name: string | null;
  created_ts: number;
  last_access_ts: number;
  filesystem_id: string;
  sha256: string;
  /** 1 when fetched while authenticated media was enforced: the legacy unauthenticated endpoints refuse it. */
  authenticated: number;
}

/** A thumbnail made locally from a cached remote media file. */
export interface RemoteMediaThumbnailsTable {
  media_origin: string;
  media_id: string;
  width: number;
  height: number;
  method: string;
  animated: number;
  content_type: string;
  length: number;
  created_ts: number;
}

export interface SchemaVersionTable {
  version: number;
  name: string;
  applied_ts: number;
}

export interface RoomsTable {
  room_nid: Generated<number>;
  room_id: string;
  room_version: string;
  creator: string;
  created_ts: number;
  is_public: number;
  current_snapshot_nid: number | null;
}

export interface EventsTable {
  event_nid: Generated<number>;
  event_id: string;
  room_nid: number;
  type: string;
  state_key: string | null;
  sender: string;
  depth: number;
  origin_server_ts: number;
  stream_ordering: number | null;
  /** The PDU (without unsigned), canonical JSON. Never NULL: an event cannot exist without its JSON. */
  json: string;
  /** The state before this event; NOT NULL unless the event is an outlier (CHECK constraint). */
  state_snapshot_nid: number | null;
  /** 1 for an event without a stream position: an outlier (no state known), a rejected or a soft-failed event. */
  outlier: number;
  contains_url: number;
  redacted_by: string | null;
  /** Why the authorization rules rejected this event (migration 0014); null for accepted events. */
  rejected_reason: string | null;
  /** 1 when the event failed the rules against the room's current state only (migration 0014). */
  soft_failed: Generated<number>;
}

export interface StateSnapshotsTable {
  snapshot_nid: Generated<number>;
  room_nid: number;
  parent_nid: number | null;
  chain_len: number;
}

export interface StateSnapshotEntriesTable {
  snapshot_nid: number;
  type: string;
  state_key: string;
  event_nid: number;
}

export interface CurrentStateTable {
  room_nid: number;
  type: string;
  state_key: string;
  event_nid: number;
}

export interface RoomMembersTable {
  room_nid: number;
  user_id: string;
  membership: string;
  event_nid: number;
  stream_ordering: number;
  forgotten: number;
}

export interface ForwardExtremitiesTable {
  room_nid: number;
  event_nid: number;
}

export interface EventEdgesTable {
  event_nid: number;
  prev_event_id: string;
}

export interface EventAuthEdgesTable {
  event_nid: number;
  auth_event_id: string;
}

export interface EventTxnIdsTable {
  user_id: string;
  device_id: string;
  txn_id: string;
  event_nid: number;
  created_ts: number;
}

export interface EventRelationsTable {
  event_nid: number;
  relates_to_id: string;
  rel_type: string;
  aggregation_key: string | null;
}

export interface RoomAliasesTable {
  alias: string;
  room_id: string;
  creator: string;
  created_ts: number;
}

export interface EventReportsTable {
  id: Generated<number>;
  room_id: string;
  event_id: string | null;
  user_id: string;
  reason: string | null;
  score: number | null;
  received_ts: number;
}

export interface UserReportsTable {
  id: Generated<number>;
  target_user_id: string;
  user_id: string;
  reason: string;
  received_ts: number;
}

export interface ProfileFieldsTable {
  user_id: string;
  field: string;
  /** The field's value, canonical JSON text. */
  value_json: string;
}

export interface UserSuspensionsTable {
  user_id: string;
  suspended_ts: number;
}

export interface ReceiptsTable {
  room_nid: number;
  user_id: string;
  /** m.read or m.read.private (m.fully_read is room account data). */
  receipt_type: string;
  /** '' for an unthreaded receipt; else 'main' or a thread root's event id. */
  thread_id: string;
  event_id: string;
  /** JSON object of the receipt data (`ts`), without thread_id. */
  data: string;
  stream_pos: number;
}

export interface PresenceTable {
  user_id: string;
  /** online | unavailable | offline */
  state: string;
  status_msg: string | null;
  last_active_ts: number;
  currently_active: number;
  stream_pos: number;
}

export interface DamageReportsTable {
  kind: string;
  room_id: string;
  event_id: string;
  detail: string;
  first_seen_ts: number;
  last_seen_ts: number;
  count: number;
  /** Set by `hearth doctor --repair` once the damage is handled. */
  resolved_ts: number | null;
}

export interface QuarantinedEventsTable {
  event_nid: number;
  event_id: string;
  room_id: string;
  reason: string;
  /** The events row as it was, as JSON. */
  row_json: string;
  quarantined_ts: number;
}

export interface QuarantinedRowsTable {
  id: Generated<number>;
  table_name: string;
  row_json: string;
  reason: string;
  quarantined_ts: number;
}

export interface MissingEventsTable {
  room_nid: number;
  event_id: string;
  referenced_by: string;
  recorded_ts: number;
}

export interface E2eDeviceKeysTable {
  user_id: string;
  device_id: string;
  /** The uploaded DeviceKeys object, canonical JSON. */
  key_json: string;
  ts: number;
}

export interface E2eOneTimeKeysTable {
  user_id: string;
  device_id: string;
  algorithm: string;
  key_id: string;
  key_json: string;
  ts: number;
}

export interface E2eFallbackKeysTable {
  user_id: string;
  device_id: string;
  algorithm: string;
  key_id: string;
  key_json: string;
  used: number;
}

export interface E2eCrossSigningKeysTable {
  user_id: string;
  /** master | self_signing | user_signing */
  key_type: string;
  /** The unpadded base64 ed25519 public key (the key id without `ed25519:`). */
  public_key: string;
  key_json: string;
}

export interface E2eSignaturesTable {
  signer_user_id: string;
  /** `ed25519:<device id or public key>` */
  signer_key_id: string;
  target_user_id: string;
  /** A device id or a cross-signing public key. */
  target_key_id: string;
  signature: string;
}

export interface ToDeviceMessagesTable {
  user_id: string;
  device_id: string;
  stream_pos: number;
  sender: string;
  type: string;
  content: string;
}

export interface ToDeviceTxnsTable {
  user_id: string;
  device_id: string;
  txn_id: string;
  created_ts: number;
}

export interface DeviceListChangesTable {
  stream_pos: number;
  user_id: string;
  /** 1 when only the user themself is told (user-signing key and signature changes). */
  only_self: number;
}

export interface RoomKeyVersionsTable {
  user_id: string;
  version: number;
  algorithm: string;
  auth_data: string;
  etag: number;
  deleted: number;
}

export interface RoomKeysTable {
  user_id: string;
  version: number;
  room_id: string;
  session_id: string;
  first_message_index: number;
  forwarded_count: number;
  is_verified: number;
  session_data: string;
}

export interface PushersTable {
  id: Generated<number>;
  user_id: string;
  device_id: string;
  app_id: string;
  pushkey: string;
  kind: string;
  app_display_name: string;
  device_display_name: string;
  profile_tag: string | null;
  lang: string;
  /** The pusher's `data` object, JSON. */
  data: string;
  created_ts: number;
}

/** Stream position up to which committed rows were fanned out to the federation outbox (migration 0013). */
export interface FederationSenderPositionTable {
  id: number;
  stream_pos: number;
}

/** What a destination still has to receive: a PDU (event_nid) or an EDU (type and content). */
export interface FederationOutboxTable {
  id: Generated<number>;
  destination: string;
  event_nid: number | null;
  room_nid: number | null;
  edu_type: string | null;
  edu_content: string | null;
  created_ts: number;
}

/** Retry state of a destination. */
export interface FederationDestinationsTable {
  destination: string;
  failure_count: number;
  retry_last_ts: number;
  retry_interval_ms: number;
  last_success_ts: number | null;
}

/** The answer given to a transaction another server sent (dedupe of retries). */
export interface FederationReceivedTxnsTable {
  origin: string;
  txn_id: string;
  response: string;
  received_ts: number;
}

/** Message ids of to-device EDUs already delivered, per remote sender. */
export interface FederationReceivedToDeviceTable {
  sender: string;
  message_id: string;
  received_ts: number;
}

/** An event persisted for another server (send_join and the like), to be relayed to the room's other servers. */
export interface FederationSendOnBehalfTable {
  event_id: string;
  origin: string;
  created_ts: number;
}

export interface StreamReservationTable {
  id: number;
  up_to: number;
}

/** A verify key of another server (migration 0012). */
export interface ServerVerifyKeysTable {
  server_name: string;
  key_id: string;
  /** Unpadded base64 ed25519 public key. */
  verify_key: string;
  /** The key may be used for signatures checked until this time (expired_ts for an old key). */
  valid_until_ts: number;
  /** Set once the server lists the key among its old_verify_keys. */
  expired_ts: number | null;
  /** The server the key came from: the key's own server, or the notary that vouched for it. */
  from_server: string;
  fetched_ts: number;
}

/** The latest /_matrix/key/v2/server answer fetched from a server itself, served again as a notary (0012). */
export interface ServerKeyResponsesTable {
  server_name: string;
  json: string;
  valid_until_ts: number;
  fetched_ts: number;
}

/** Per application service: the stream position delivered through and the last transaction id used. */
export interface AppserviceStateTable {
  as_id: string;
  stream_pos: number;
  last_txn_id: number;
}

/** The transaction built for an application service and not yet acknowledged (at most one per service). */
export interface AppserviceTxnsTable {
  as_id: string;
  txn_id: number;
  from_pos: number;
  to_pos: number;
  /** The JSON body exactly as sent. */
  body: string;
  created_ts: number;
}

/** A room an application service published in its network's room directory (0019). */
export interface AppserviceRoomListTable {
  as_id: string;
  network_id: string;
  room_id: string;
}

/** A simplified sliding sync connection: (user, device, conn_id) (0018). */
export interface SlidingSyncConnectionsTable {
  conn_nid: Generated<number>;
  user_id: string;
  device_id: string;
  conn_id: string;
  created_ts: number;
  last_used_ts: number;
}

/** A `pos` handed out on a sliding sync connection, child of the position its request named (0018). */
export interface SlidingSyncPositionsTable {
  pos_nid: Generated<number>;
  conn_nid: number;
  parent_pos_nid: number | null;
  stream: number;
  typing: number;
  created_ts: number;
  /** JSON: list name → count in that response (0020; null before). */
  list_counts: string | null;
}

/** What one sliding sync response sent of one room (0018). */
export interface SlidingSyncRoomsTable {
  pos_nid: number;
  room_id: string;
  membership: string;
  sent_to: number;
  timeline_limit: number;
  required_state: string;
  lazy_members: string;
}

/** A room's latest bump-type event position and latest event position, derived from committed events (0022). */
export interface SlidingSyncRoomBumpsTable {
  room_nid: number;
  bump: number | null;
  last: number | null;
}

/** The stream position up to which sliding_sync_room_bumps covers committed events (0022, one row, id 1). */
export interface SlidingSyncBumpMarkTable {
  id: number;
  stream: number;
}

export interface Database {
  sliding_sync_room_bumps: SlidingSyncRoomBumpsTable;
  sliding_sync_bump_mark: SlidingSyncBumpMarkTable;
  sliding_sync_connections: SlidingSyncConnectionsTable;
  sliding_sync_positions: SlidingSyncPositionsTable;
  sliding_sync_rooms: SlidingSyncRoomsTable;
  appservice_state: AppserviceStateTable;
  appservice_txns: AppserviceTxnsTable;
  appservice_room_list: AppserviceRoomListTable;
  federation_sender_position: FederationSenderPositionTable;
  federation_outbox: FederationOutboxTable;
  federation_destinations: FederationDestinationsTable;
  federation_received_txns: FederationReceivedTxnsTable;
  federation_received_to_device: FederationReceivedToDeviceTable;
  federation_send_on_behalf: FederationSendOnBehalfTable;
  server_verify_keys: ServerVerifyKeysTable;
  server_key_responses: ServerKeyResponsesTable;
  stream_reservation: StreamReservationTable;
  damage_reports: DamageReportsTable;
  quarantined_events: QuarantinedEventsTable;
  quarantined_rows: QuarantinedRowsTable;
  missing_events: MissingEventsTable;
  rooms: RoomsTable;
  events: EventsTable;
  state_snapshots: StateSnapshotsTable;
  state_snapshot_entries: StateSnapshotEntriesTable;
  current_state: CurrentStateTable;
  room_members: RoomMembersTable;
  forward_extremities: ForwardExtremitiesTable;
  event_edges: EventEdgesTable;
  event_auth_edges: EventAuthEdgesTable;
  event_txn_ids: EventTxnIdsTable;
  event_relations: EventRelationsTable;
  room_aliases: RoomAliasesTable;
  event_reports: EventReportsTable;
  user_reports: UserReportsTable;
  profile_fields: ProfileFieldsTable;
  user_suspensions: UserSuspensionsTable;
  users: UsersTable;
  media: MediaTable;
  media_thumbnails: MediaThumbnailsTable;
  remote_media_cache: RemoteMediaCacheTable;
  remote_media_thumbnails: RemoteMediaThumbnailsTable;
  devices: DevicesTable;
  access_tokens: AccessTokensTable;
  refresh_tokens: RefreshTokensTable;
  account_data: AccountDataTable;
  filters: FiltersTable;
  uia_sessions: UiaSessionsTable;
  registration_tokens: RegistrationTokensTable;
  schema_version: SchemaVersionTable;
  receipts: ReceiptsTable;
  presence: PresenceTable;
  e2e_device_keys: E2eDeviceKeysTable;
  e2e_one_time_keys: E2eOneTimeKeysTable;
  e2e_fallback_keys: E2eFallbackKeysTable;
  e2e_cross_signing_keys: E2eCrossSigningKeysTable;
  e2e_signatures: E2eSignaturesTable;
  to_device_messages: ToDeviceMessagesTable;
  to_device_txns: ToDeviceTxnsTable;
  device_list_changes: DeviceListChangesTable;
  room_key_versions: RoomKeyVersionsTable;
  room_keys: RoomKeysTable;
  pushers: PushersTable;
  openid_tokens: OpenidTokensTable;
}

export type UserRow = Selectable<UsersTable>;
export type DeviceRow = Selectable<DevicesTable>;
export type NewUser = Insertable<UsersTable>;
