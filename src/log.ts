/** The process logger (pino). Secrets never reach it: authorization headers and tokens are redacted. */
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type pretty from 'pino-pretty';

const require = createRequire(import.meta.url);

/** JSON lines by default (for log collectors); readable, coloured lines when stdout is a terminal. */
function defaultDestination(): pino.DestinationStream {
  // pino-pretty (and its dependencies) is loaded only for a terminal: a service writing JSON never needs it.
  if (process.stdout.isTTY)
    return (require('pino-pretty') as typeof pretty)({
      colorize: true,
      sync: true,
      ignore: 'svc,pid,hostname',
    });
  return pino.destination({ dest: 1, sync: false });
}

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
    destination ?? defaultDestination(),
  );
}

/** The logger of one module, at the module's level from `log_levels` when one is configured. */
export function moduleLogger(root: Logger, module: string, levels: Partial<Record<string, string>>): Logger {
  const level = levels[module];
  return root.child({ module }, level ? { level } : {});
}
