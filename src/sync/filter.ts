/**
 * The sync Filter of the client-server API (definitions/sync_filter.yaml, event_filter.yaml,
 * room_event_filter.yaml). Unknown keys are kept: the spec lets filters carry extensions.
 */
import { z } from 'zod';
import { parseBody } from '../util/validate.js';

const UserIds = z.array(z.string().startsWith('@', 'must be a user ID'));
const RoomIds = z.array(z.string().startsWith('!', 'must be a room ID'));
const Types = z.array(z.string());

const eventFilterShape = {
  // The spec says "greater than 0", but SyTest and clients send `timeline.limit: 0` (no timeline events, only a
  // limited flag and prev_batch) and Synapse accepts any number: 0 is accepted, negative values are not.
  limit: z.int().min(0).optional(),
  not_senders: UserIds.optional(),
  not_types: Types.optional(),
  senders: UserIds.optional(),
  types: Types.optional(),
};

export const EventFilterSchema = z.looseObject(eventFilterShape);

export const RoomEventFilterSchema = z.looseObject({
  ...eventFilterShape,
  unread_thread_notifications: z.boolean().optional(),
  lazy_load_members: z.boolean().optional(),
  include_redundant_members: z.boolean().optional(),
  not_rooms: RoomIds.optional(),
  rooms: RoomIds.optional(),
  contains_url: z.boolean().optional(),
});

export const RoomFilterSchema = z.looseObject({
  not_rooms: RoomIds.optional(),
  rooms: RoomIds.optional(),
  ephemeral: RoomEventFilterSchema.optional(),
  include_leave: z.boolean().optional(),
  state: RoomEventFilterSchema.optional(),
  timeline: RoomEventFilterSchema.optional(),
  account_data: RoomEventFilterSchema.optional(),
});

export const FilterSchema = z.looseObject({
  event_fields: z.array(z.string()).optional(),
  event_format: z.enum(['client', 'federation']).optional(),
  presence: EventFilterSchema.optional(),
  account_data: EventFilterSchema.optional(),
  room: RoomFilterSchema.optional(),
});

export type EventFilter = z.infer<typeof EventFilterSchema>;
export type RoomEventFilter = z.infer<typeof RoomEventFilterSchema>;
export type RoomFilter = z.infer<typeof RoomFilterSchema>;
export type Filter = z.infer<typeof FilterSchema>;

/**
 * Validates a filter definition. Throws M_NOT_JSON when it is not an object and M_BAD_JSON naming the first
 * offending field (e.g. `room.timeline.limit`) otherwise.
 */
export function validateFilter(value: unknown): Filter {
  return parseBody(FilterSchema, value);
}
