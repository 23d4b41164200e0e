import { generateConfig } from '../config/generate.js';

export interface GenerateConfigOptions {
  serverName: string;
  dataDir: string;
  port: number;
  database?: string;
  bindAddress: string;
  enableRegistration: boolean;
}

export function generateConfigCommand(opts: GenerateConfigOptions): void {
  process.stdout.write(
    generateConfig({
      serverName: opts.serverName,
      dataDir: opts.dataDir,
      port: opts.port,
      database: opts.database,
      bindAddress: opts.bindAddress,
      enableRegistration: opts.enableRegistration,
    }),
  );
}
