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
}

export interface RegistrationTokensTable {
  token: string;
  uses_allowed: number | null;
  pending: number;
  completed: number;
  expiry_time: number | null;
}

export interface SchemaVersionTable {
  version: number;
  name: string;
  applied_ts: number;
}

export interface Database {
  users: UsersTable;
  devices: DevicesTable;
  access_tokens: AccessTokensTable;
  refresh_tokens: RefreshTokensTable;
  account_data: AccountDataTable;
  filters: FiltersTable;
  uia_sessions: UiaSessionsTable;
  registration_tokens: RegistrationTokensTable;
  schema_version: SchemaVersionTable;
}

export type UserRow = Selectable<UsersTable>;
export type DeviceRow = Selectable<DevicesTable>;
export type NewUser = Insertable<UsersTable>;
