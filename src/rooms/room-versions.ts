/**
 * The room versions known to this server (content/rooms/v1.md .. v12.md) and the properties of each that
 * the protocol code branches on.
 */

export type EventIdFormat =
  /** `$opaque:server`, carried in the event itself (v1, v2). */
  | 'v1'
  /** `$` + standard unpadded base64 of the reference hash (v3). */
  | 'v3'
  /** `$` + URL-safe unpadded base64 of the reference hash (v4+). */
  | 'v4';

/** Which redaction algorithm fragment applies. */
export type RedactionAlgorithm = 'v1' | 'v6' | 'v8' | 'v9' | 'v11';

export type StateResolutionAlgorithm = 'v1' | 'v2' | 'v2.1';

export interface RoomVersion {
  id: string;
  stable: boolean;
  eventIdFormat: EventIdFormat;
  redaction: RedactionAlgorithm;
  stateResolution: StateResolutionAlgorithm;
  /** v1-v5: the `m.room.aliases` auth rule (sender's domain must equal the state key). */
  aliasesAuthRule: boolean;
  /** v1-v2: the `m.room.redaction` auth rule (redact level or same event-id domain). */
  redactionAuthRule: boolean;
  /** v6+: power level changes also check `notifications`. */
  notificationsPowerLevels: boolean;
  /** v6+: canonical JSON is strictly enforced (no floats, integers within ±(2^53-1)). */
  strictCanonicalJson: boolean;
  /** v1-v5: power level values may be floats (truncated). */
  floatPowerLevels: boolean;
  /** v1-v9: power level values may be strings holding an integer. v10+: integers only. */
  stringPowerLevels: boolean;
  /** v5+: signing key validity period (`valid_until_ts`) is enforced. */
  enforceKeyValidity: boolean;
  /** v7+: `knock` join rule and membership. */
  knocking: boolean;
  /** v8+: `restricted` join rule and `join_authorised_via_users_server`. */
  restrictedJoins: boolean;
  /** v10+: `knock_restricted` join rule. */
  knockRestricted: boolean;
  /** v1-v10: `m.room.create` must have `content.creator`; v11+ the creator is the create event's sender. */
  creatorInContent: boolean;
  /** v11+: `m.room.redaction` carries `redacts` in `content` rather than at the top level. */
  redactsInContent: boolean;
  /** v12: the room ID is the create event's reference hash; the create event has no `room_id`. */
  roomIdFromCreateEvent: boolean;
  /** v12: room creators (create sender + `additional_creators`) have infinite power. */
  privilegedCreators: boolean;
  /** Whether the `m.room.create` event is selected as an auth event (all but v12). */
  createEventInAuthEvents: boolean;
}

type Overrides = Partial<Omit<RoomVersion, 'id'>>;

const V1: Omit<RoomVersion, 'id'> = {
  stable: true,
  eventIdFormat: 'v1',
  redaction: 'v1',
  stateResolution: 'v1',
  aliasesAuthRule: true,
  redactionAuthRule: true,
  notificationsPowerLevels: false,
  strictCanonicalJson: false,
  floatPowerLevels: true,
  stringPowerLevels: true,
  enforceKeyValidity: false,
  knocking: false,
  restrictedJoins: false,
  knockRestricted: false,
  creatorInContent: true,
  redactsInContent: false,
  roomIdFromCreateEvent: false,
  privilegedCreators: false,
  createEventInAuthEvents: true,
};

const DIFFS: [string, Overrides][] = [
  ['1', {}],
  ['2', { stateResolution: 'v2' }],
  ['3', { eventIdFormat: 'v3', redactionAuthRule: false }],
  ['4', { eventIdFormat: 'v4' }],
  ['5', { enforceKeyValidity: true }],
  [
    '6',
    {
      redaction: 'v6',
      aliasesAuthRule: false,
      notificationsPowerLevels: true,
      strictCanonicalJson: true,
      floatPowerLevels: false,
    },
  ],
  ['7', { knocking: true }],
  ['8', { redaction: 'v8', restrictedJoins: true }],
  ['9', { redaction: 'v9' }],
  ['10', { stringPowerLevels: false, knockRestricted: true }],
  ['11', { redaction: 'v11', creatorInContent: false, redactsInContent: true }],
  [
    '12',
    {
      stateResolution: 'v2.1',
      roomIdFromCreateEvent: true,
      privilegedCreators: true,
      createEventInAuthEvents: false,
    },
  ],
];

function buildTable(): ReadonlyMap<string, RoomVersion> {
  const table = new Map<string, RoomVersion>();
  let current: Omit<RoomVersion, 'id'> = V1;
  for (const [id, diff] of DIFFS) {
    current = { ...current, ...diff };
    table.set(id, Object.freeze({ id, ...current }));
  }
  return table;
}

export const ROOM_VERSIONS: ReadonlyMap<string, RoomVersion> = buildTable();

/** The spec recommends v12 for new rooms; callers may pass their own configured default. */
export const DEFAULT_ROOM_VERSION = '12';

export function isKnownRoomVersion(id: string): boolean {
  return ROOM_VERSIONS.has(id);
}

/** The room version record for an id, or `undefined` if unknown. */
export function findRoomVersion(id: string): RoomVersion | undefined {
  return ROOM_VERSIONS.get(id);
}

export class UnknownRoomVersionError extends Error {
  constructor(readonly version: string) {
    super(`Unknown room version: ${version}`);
    this.name = 'UnknownRoomVersionError';
  }
}

/** The room version record for an id; throws `UnknownRoomVersionError` if unknown. */
export function getRoomVersion(id: string | RoomVersion): RoomVersion {
  if (typeof id !== 'string') return id;
  const v = ROOM_VERSIONS.get(id);
  if (!v) throw new UnknownRoomVersionError(id);
  return v;
}

export interface RoomVersionsCapability {
  default: string;
  available: Record<string, 'stable' | 'unstable'>;
}

/** The `m.room_versions` capability for `GET /capabilities`. */
export function roomVersionsCapability(
  defaultVersion: string = DEFAULT_ROOM_VERSION,
): RoomVersionsCapability {
  if (!ROOM_VERSIONS.has(defaultVersion)) throw new UnknownRoomVersionError(defaultVersion);
  const available: Record<string, 'stable' | 'unstable'> = {};
  for (const v of ROOM_VERSIONS.values()) available[v.id] = v.stable ? 'stable' : 'unstable';
  return { default: defaultVersion, available };
}
