import { generateConfig, tlsPaths } from '../config/generate.js';
import { ensureSelfSignedCertificate } from '../keys/tls-certificate.js';
import { CliError } from './errors.js';

export interface GenerateConfigOptions {
  serverName: string;
  dataDir: string;
  port: number;
  database?: string;
  bindAddress: string;
  enableRegistration: boolean;
  federationPort?: number;
  tlsCertificatePath?: string;
  tlsPrivateKeyPath?: string;
}

export function generateConfigCommand(opts: GenerateConfigOptions): void {
  if (Boolean(opts.tlsCertificatePath) !== Boolean(opts.tlsPrivateKeyPath))
    throw new CliError('--tls-certificate-path and --tls-private-key-path go together');
  const options = {
    serverName: opts.serverName,
    dataDir: opts.dataDir,
    port: opts.port,
    database: opts.database,
    bindAddress: opts.bindAddress,
    enableRegistration: opts.enableRegistration,
    federationPort: opts.federationPort,
    tlsCertificatePath: opts.tlsCertificatePath,
    tlsPrivateKeyPath: opts.tlsPrivateKeyPath,
  };
  if (opts.federationPort !== undefined && !opts.tlsCertificatePath) {
    const { cert, key } = tlsPaths(options);
    if (ensureSelfSignedCertificate(cert, key, opts.serverName))
      process.stderr.write(`wrote a self-signed TLS certificate to ${cert} (key ${key})\n`);
  }
  process.stdout.write(generateConfig(options));
}
