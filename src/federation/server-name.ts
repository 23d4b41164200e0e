/** Server names split into host and port (appendix "Server Name"), as discovery and the certificate check need them. */
import { isIP } from 'node:net';
import { isValidServerName } from '../rooms/identifiers.js';

export interface ServerName {
  /** The host without brackets: a DNS name, an IPv4 or an IPv6 address. */
  host: string;
  port: number | undefined;
  /** 4 or 6 for an IP literal, 0 for a DNS name. */
  ipVersion: 0 | 4 | 6;
}

/** Parses `host[:port]` or `[ipv6][:port]`; `null` when it is not a valid server name. */
export function parseServerName(name: string): ServerName | null {
  if (!isValidServerName(name)) return null;
  let host: string;
  let port: string | undefined;
  if (name.startsWith('[')) {
    const close = name.indexOf(']');
    host = name.slice(1, close);
    port = name.slice(close + 1).replace(/^:/, '') || undefined;
    if (isIP(host) !== 6) return null;
  } else {
    [host = '', port] = name.split(':');
  }
  const ipVersion = isIP(host);
  return {
    host,
    port: port === undefined ? undefined : Number(port),
    ipVersion: ipVersion === 4 || ipVersion === 6 ? ipVersion : 0,
  };
}

/** `host` or `host:port`, with brackets around an IPv6 host (a Host header, a well-known `m.server`). */
export function formatHostPort(host: string, port?: number): string {
  const h = isIP(host) === 6 ? `[${host}]` : host;
  return port === undefined ? h : `${h}:${port}`;
}
