/** `hearth backup` and `hearth restore` (see src/integrity/backup.ts for the format). */
import { resolve } from 'node:path';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { BackupError, makeBackup, restoreBackup } from '../integrity/backup.js';
import { runDoctor } from '../integrity/doctor.js';
import { formatProblem } from '../integrity/problems.js';
import { CliError } from './errors.js';
import { openForCli } from './doctor.js';

function config(path: string): ReturnType<typeof loadConfigFile> {
  try {
    return loadConfigFile(path);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
}

export async function backupCommand(opts: { config: string; out: string }): Promise<void> {
  try {
    const m = await makeBackup(config(opts.config), opts.config, resolve(opts.out));
    console.log(
      `backup of ${m.server_name} (${m.engine}, schema ${m.schema_version}${m.media ? ', media' : ''}) written to ${resolve(opts.out)}`,
    );
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(`backup failed: ${err.message}`);
    throw err;
  }
}

/** Restores, then runs the doctor on the restored copy: exit 1 when it is not clean. */
export async function restoreCommand(opts: { config: string; from: string }): Promise<void> {
  try {
    const m = await restoreBackup(config(opts.config), resolve(opts.from));
    console.log(`restored the backup of ${m.server_name} made ${new Date(m.created_ts).toISOString()}`);
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(`restore failed: ${err.message}`);
    throw err;
  }
  const { storage } = await openForCli(opts.config);
  try {
    const report = await runDoctor(storage);
    for (const p of report.problems) console.log(formatProblem(p));
    console.log(
      `doctor on the restored database: ${report.problems.length} problems in ${report.roomsChecked} rooms`,
    );
    process.exitCode = report.problems.length ? 1 : 0;
  } finally {
    await storage.close();
  }
}
