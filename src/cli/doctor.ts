/**
 * `hearth doctor`: checks (and with --repair, repairs) a stopped server's database. Exit status 0 when clean (or
 * when every problem found was repaired), 1 when problems remain, 2 when it could not run.
 */
import { loadAppServices } from '../appservice/registration.js';
import { createLogger } from '../log.js';
import { mediaProblems } from '../media/doctor.js';
import { MediaService } from '../media/service.js';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { runDoctor, UnknownRoomError } from '../integrity/doctor.js';
import { formatProblem } from '../integrity/problems.js';
import { DatabaseUnavailableError, openStorage, type Storage } from '../storage/db.js';
import { SchemaTooNewError } from '../storage/migrate.js';
import { listQuarantine } from '../storage/quarantine.js';
import { CliError } from './errors.js';

export interface DoctorCliOptions {
  config: string;
  json?: boolean;
  repair?: boolean;
  room?: string;
  listQuarantine?: boolean;
  progressEvery?: number;
}

export async function openForCli(
  configPath: string,
): Promise<{ storage: Storage; config: ReturnType<typeof loadConfigFile> }> {
  try {
    const config = loadConfigFile(configPath);
    return { storage: await openStorage(config.database), config };
  } catch (err) {
    if (
      err instanceof ConfigError ||
      err instanceof DatabaseUnavailableError ||
      err instanceof SchemaTooNewError
    ) {
      throw new CliError(err.message);
    }
    throw new CliError(`cannot open the database: ${(err as Error).message}`);
  }
}

export async function doctorCommand(opts: DoctorCliOptions): Promise<void> {
  const { storage, config } = await openForCli(opts.config);
  const media = new MediaService({ storage, config, log: createLogger('silent') });
  try {
    if (opts.listQuarantine) {
      const rows = await listQuarantine(storage.db);
      if (opts.json) console.log(JSON.stringify({ quarantine: rows }, null, 2));
      else {
        for (const r of rows) {
          const when = new Date(r.quarantinedTs).toISOString();
          console.log(`${r.what}\t${r.roomId ?? '-'}\t${r.eventId ?? '-'}\t${when}\t${r.reason}`);
        }
        console.error(`${rows.length} quarantined rows`);
      }
      process.exitCode = 0;
      return;
    }
    let report;
    try {
      report = await runDoctor(storage, {
        repair: opts.repair ?? false,
        ...(opts.room !== undefined ? { roomId: opts.room } : {}),
        progressEvery: opts.progressEvery ?? 100,
        onProgress: (line) => console.error(line),
        extraChecks: (repair) => mediaProblems(media, repair, { storage, log: createLogger('silent') }),
        appServiceIds: loadAppServices(config.app_service_config_files, config.server_name).map((a) => a.id),
      });
    } catch (err) {
      if (err instanceof UnknownRoomError) throw new CliError(err.message);
      throw new CliError(`doctor failed: ${(err as Error).message}`);
    }
    if (opts.json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      for (const p of report.problems) console.log(formatProblem(p));
      const summary = `${report.roomsChecked} rooms checked, ${report.problems.length} problems found`;
      if (report.repaired) {
        console.error(
          `${summary}; repaired: ${report.eventsQuarantined} events and ${report.rowsQuarantined} rows quarantined, ` +
            `${report.roomsRebuilt} rooms rebuilt; ${report.remaining.length} problems remain`,
        );
        for (const p of report.remaining) console.log(`remaining\t${formatProblem(p)}`);
      } else console.error(summary);
    }
    process.exitCode = report.remaining.length > 0 ? 1 : 0;
  } finally {
    await storage.close();
  }
}
