/** The media store's part of `hearth doctor`: files without rows, rows without (complete) files. */
import type { Problem } from '../integrity/problems.js';
import type { MediaService } from './service.js';

export async function mediaProblems(media: MediaService, repair: boolean): Promise<Problem[]> {
  const found = await media.checkIntegrity(repair);
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
  ];
}
