/** The process logger (pino). Secrets never reach it: authorization headers and tokens are redacted. */
import pino, { type Logger } from 'pino';

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'hearth' },
      redact: {
        paths: [
          'req.headers.authorization',
          '*.access_token',
          '*.refresh_token',
          '*.password',
          'headers.authorization',
        ],
        censor: '<redacted>',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
