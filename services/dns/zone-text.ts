// Records written back as master-file text (RFC 1035 section 5), the inverse
// of zone-file.ts: one record a line, owner relative to the origin ("@" for
// the apex), the TTL always written, names in record data absolute. Any byte
// that is not plain printable ASCII is written as \DDD, so the text reads the
// same in every zone-file parser (kzonecheck refuses raw UTF-8 in a TXT
// string); TXT strings stay as split on the wire, 255 bytes at most each.
import type { ZoneRecord } from './zone-file.ts';

// Printable ASCII stands for itself in a name, except what master files give
// a meaning of their own; anything else is written \DDD.
const SPECIAL = '.;()"\\@$';

function escapeLabel(label: string): string {
  let out = '';
  for (const char of label) {
    const code = char.charCodeAt(0); // names hold one byte per character (latin1)
    out += code > 0x20 && code < 0x7f && !SPECIAL.includes(char) ? char : `\\${String(code).padStart(3, '0')}`;
  }
  return out;
}

export function absoluteName(name: string): string {
  return name === '' ? '.' : `${name.split('.').map(escapeLabel).join('.')}.`;
}

// The owner as written in a zone whose origin is given.
export function ownerName(name: string, origin: string): string {
  if (name === origin) return '@';
  if (origin !== '' && name.endsWith(`.${origin}`)) return name.slice(0, -origin.length - 1).split('.').map(escapeLabel).join('.');
  return absoluteName(name);
}

function quoted(bytes: Buffer): string {
  let out = '"';
  for (const byte of bytes) {
    out += byte === 0x22 || byte === 0x5c ? `\\${String.fromCharCode(byte)}` : byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\${String(byte).padStart(3, '0')}`;
  }
  return `${out}"`;
}

// The compact form of an IPv6 address (the parser keeps all eight groups).
function compactIPv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

export function rdataText(record: ZoneRecord): string {
  switch (record.type) {
    case 'A':
      return record.address;
    case 'AAAA':
      return compactIPv6(record.address);
    case 'MX':
      return `${record.priority} ${absoluteName(record.exchange)}`;
    case 'NS':
      return absoluteName(record.ns);
    case 'CNAME':
    case 'PTR':
      return absoluteName(record.domain);
    case 'SOA':
      return `${absoluteName(record.primary)} ${absoluteName(record.admin)} ${record.serial} ${record.refresh} ${record.retry} ${record.expiration} ${record.minimum}`;
    case 'TXT':
      return record.data.map(quoted).join(' ');
  }
}

export function recordLine(record: ZoneRecord, origin: string): string {
  return `${ownerName(record.name, origin)} ${record.ttl} ${record.type} ${rdataText(record)}`;
}
