/**
 * ip_range_blacklist / ip_range_whitelist: which addresses outbound federation may connect to. The check is made on
 * the resolved address, so a DNS name pointing at a private address is refused like the address itself. IPv6 forms
 * that embed an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4) are also checked as that IPv4 address, so that
 * `::ffff:127.0.0.1` does not slip past `127.0.0.0/8`.
 */
import { BlockList, isIP } from 'node:net';

/** Parses an IPv6 address (with an optional dotted IPv4 tail) into 16 bytes; `null` if malformed. */
export function ipv6Bytes(ip: string): Buffer | null {
  if (isIP(ip) !== 6) return null;
  let text = ip.replace(/%.*$/, '');
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const [a, b, c, d] = (tail[1] as string).split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -(tail[1] as string).length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const groups = (s: string): number[] => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = rest === undefined ? [] : groups(rest);
  const all = [...h, ...new Array<number>(Math.max(0, 8 - h.length - t.length)).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.slice(0, 8).forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** The IPv4 address an IPv6 address embeds (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, 6to4 `2002:aabb:ccdd::`). */
export function embeddedIpv4(ip: string): string | null {
  const b = ipv6Bytes(ip);
  if (!b) return null;
  const v4 = (o: number): string => [...b.subarray(o, o + 4)].join('.');
  const zeros = (from: number, to: number): boolean => b.subarray(from, to).every((x) => x === 0);
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12);
  // IPv4-compatible, but not :: and ::1 (which are IPv6's own unspecified and loopback addresses).
  if (zeros(0, 12) && !zeros(12, 14)) return v4(12);
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2);
  return null;
}

export class IpRangeSet {
  readonly #list = new BlockList();

  constructor(ranges: readonly string[]) {
    for (const r of ranges) this.add(r);
  }

  add(range: string): void {
    const [addr = '', prefix] = range.split('/');
    const family = isIP(addr);
    if (!family) throw new Error(`not an IP address or range: ${range}`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) this.#list.addAddress(addr, type);
    else this.#list.addSubnet(addr, Number(prefix), type);
  }

  has(ip: string): boolean {
    const family = isIP(ip);
    if (family === 4) return this.#list.check(ip, 'ipv4');
    if (family !== 6) return false;
    const bare = ip.replace(/%.*$/, '');
    if (this.#list.check(bare, 'ipv6')) return true;
    const v4 = embeddedIpv4(bare);
    return v4 !== null && this.#list.check(v4, 'ipv4');
  }
}

/** The outbound address policy: blacklisted (and always 0.0.0.0 and ::) unless whitelisted. */
export class AddressPolicy {
  readonly #black: IpRangeSet;
  readonly #white: IpRangeSet;

  constructor(blacklist: readonly string[], whitelist: readonly string[]) {
    this.#black = new IpRangeSet([...blacklist, '0.0.0.0', '::']);
    this.#white = new IpRangeSet(whitelist);
  }

  allows(ip: string): boolean {
    return !this.#black.has(ip) || this.#white.has(ip);
  }
}
