import { m0001 } from './0001_accounts.js';
import { m0002 } from './0002_rooms.js';
import { m0003 } from './0003_search.js';
import { m0004 } from './0004_ephemeral.js';
import { m0005 } from './0005_damage.js';
import { m0006 } from './0006_e2ee.js';
import { m0007 } from './0007_media.js';
import { m0008 } from './0008_quarantine.js';
import { m0009 } from './0009_pushers.js';
import { m0010 } from './0010_stream_reservation.js';
import { m0011 } from './0011_uia_params_openid.js';
import { m0012 } from './0012_federation_keys.js';
import { m0013 } from './0013_federation_queue.js';
import { m0014 } from './0014_federation_events.js';
import { m0015 } from './0015_federation_send_on_behalf.js';
import { m0016 } from './0016_remote_media_cache.js';
import { m0017 } from './0017_appservice_queue.js';
import { m0018 } from './0018_sliding_sync.js';
import { m0019 } from './0019_appservice_room_list.js';
import { m0020 } from './0020_sliding_sync_list_counts.js';
import { m0021 } from './0021_user_reports_profile_fields.js';
import { m0022 } from './0022_sliding_sync_bumps.js';
import { m0023 } from './0023_event_txn_ids_event_index.js';
import type { Migration } from './types.js';

/** Every migration, in order. Append only; never edit one that has shipped. */
export const MIGRATIONS: readonly Migration[] = [
  m0001,
  m0002,
  m0003,
  m0004,
  m0005,
  m0006,
  m0007,
  m0008,
  m0009,
  m0010,
  m0011,
  m0012,
  m0013,
  m0014,
  m0015,
  m0016,
  m0017,
  m0018,
  m0019,
  m0020,
  m0021,
  m0022,
  m0023,
];
