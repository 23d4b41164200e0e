/** The media store's part of `hearth doctor`: files without rows, rows without (complete) files, local and cached. */
import type { Problem } from '../integrity/problems.js';
import { checkRemoteMediaIntegrity, type RemoteMediaFilesDeps } from './remote-media.js';
import type { MediaService } from './service.js';

export async function mediaProblems(
  media: MediaService,
  repair: boolean,
  remote?: Omit<RemoteMediaFilesDeps, 'store'>,
): Promise<Problem[]> {
  const found = await media.checkIntegrity(repair);
  const cached = remote
    ? await checkRemoteMediaIntegrity({ ...remote, store: media.store }, repair)
    : { orphanFiles: [], missingFiles: [] };
  return [
    ...found.orphanFiles.map((id) => ({
      kind: 'media_file_orphan' as const,
      roomId: null,
      eventId: null,
      detail: `media file ${id} has no media row${repair ? ' (removed)' : ''}`,
    })),
    ...found.missingFiles.map((id) => ({
      kind: 'media_file_missing' as const,
      roomId: null,
      eventId: null,
      detail: `media ${id} has a row but its file is missing or truncated${repair ? ' (row removed)' : ''}`,
    })),
    ...cached.orphanFiles.map((id) => ({
      kind: 'media_file_orphan' as const,
      roomId: null,
      eventId: null,
      detail: `cached remote media file ${id} has no remote_media_cache row${repair ? ' (removed)' : ''}`,
    })),
    ...cached.missingFiles.map((key) => ({
      kind: 'media_file_missing' as const,
      roomId: null,
      eventId: null,
      detail: `cached remote media ${key} has a row but its file is missing or truncated${
        repair ? ' (dropped from the cache; fetched again on its next request)' : ''
      }`,
    })),
  ];
}
