// Makes a lab DKIM key: writes the private key (PKCS#8 PEM) to
// dns-zone/dkim/<domain>/<selector>.pem and prints the TXT record to paste
// into dns-zone/<domain>.zone. The keys are lab-only test keys, committed on
// purpose so that a fresh clone signs and verifies without setup.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { checkName } from '../services/dns/zone-file.ts';

export type KeyType = 'rsa' | 'ed25519';

const DEFAULT_DIR = join(import.meta.dirname, '..', 'dns-zone', 'dkim');

const SYNOPSIS = 'usage: node scripts/dkim-keygen.ts <domain> <selector> [--type rsa|ed25519] [--bits 2048] [--dir <path>] [--force]';

const USAGE = `${SYNOPSIS}

Writes a DKIM private key to <dir>/<domain>/<selector>.pem and prints the
zone-file line that publishes its public key.

options:
  --type rsa|ed25519  key type (default rsa; ed25519 is RFC 8463)
  --bits <n>          RSA key size, 1024 to 4096 (default 2048)
  --dir <path>        key directory (default dns-zone/dkim)
  --force             replace an existing key (then publish the new record)
  --help              show this text
`;

export function makeKey(type: KeyType, bits = 2048): { privateKey: KeyObject; publicKey: KeyObject } {
  return type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: bits }) : generateKeyPairSync('ed25519');
}

// The p= value: for RSA the DER SubjectPublicKeyInfo (RFC 6376 3.6.1), for
// Ed25519 the bare 32-byte key (RFC 8463 4.2), both in base64.
export function publicKeyData(publicKey: KeyObject): string {
  if (publicKey.asymmetricKeyType === 'ed25519') {
    const { x } = publicKey.export({ format: 'jwk' });
    return Buffer.from(x as string, 'base64url').toString('base64');
  }
  if (publicKey.asymmetricKeyType === 'rsa') {
    return publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
  }
  throw new Error(`DKIM has no key type for ${publicKey.asymmetricKeyType} keys`);
}

export function dkimRecord(publicKey: KeyObject): string {
  const k = publicKey.asymmetricKeyType === 'ed25519' ? 'ed25519' : 'rsa';
  return `v=DKIM1; k=${k}; p=${publicKeyData(publicKey)}`;
}

// One character-string holds at most 255 bytes (RFC 1035 3.3), so a 2048-bit
// key is published as several strings that verifiers join back together.
export function zoneLine(selector: string, record: string): string {
  const parts: string[] = [];
  for (let at = 0; at < record.length; at += 255) parts.push(`"${record.slice(at, at + 255)}"`);
  return `${selector}._domainkey  TXT ( ${parts.join(' ')} )`;
}

class UsageError extends Error {}

function readArgs(args: string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        type: { type: 'string', default: 'rsa' },
        bits: { type: 'string' },
        dir: { type: 'string', default: DEFAULT_DIR },
        force: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return undefined;
  if (positionals.length !== 2) throw new UsageError('expected a domain and a selector');
  const [domain, selector] = positionals.map((p) => p.toLowerCase());
  // Both become file names too, so only plain DNS labels are accepted.
  if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(domain) || checkName(domain)) throw new UsageError(`"${domain}" is not a domain name`);
  if (!/^[a-z0-9_-]{1,63}$/.test(selector)) throw new UsageError(`"${selector}" is not a selector (one DNS label)`);
  const type = values.type;
  if (type !== 'rsa' && type !== 'ed25519') throw new UsageError(`--type must be rsa or ed25519, not "${type}"`);
  if (type === 'ed25519' && values.bits !== undefined) throw new UsageError('--bits is for RSA keys only');
  const bits = Number(values.bits ?? 2048);
  // RFC 8301: verifiers must refuse RSA keys under 1024 bits.
  if (!Number.isInteger(bits) || bits < 1024 || bits > 4096) throw new UsageError(`--bits must be a number from 1024 to 4096`);
  return { domain, selector, type: type as KeyType, bits, dir: values.dir, force: values.force };
}

function main(args: string[]): number {
  let options;
  try {
    options = readArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`dkim-keygen: ${error.message}\n${SYNOPSIS}\n`);
    return 2;
  }
  if (!options) {
    process.stdout.write(USAGE);
    return 0;
  }
  const file = join(options.dir, options.domain, `${options.selector}.pem`);
  const shown = relative(process.cwd(), file);
  if (existsSync(file) && !options.force) {
    process.stderr.write(`dkim-keygen: ${shown} already exists; its public key may be published. Use --force to replace it.\n`);
    return 1;
  }
  const { privateKey, publicKey } = makeKey(options.type, options.bits);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }));
  process.stderr.write(`wrote ${shown}; publish this in dns-zone/${options.domain}.zone:\n`);
  process.stdout.write(`${zoneLine(options.selector, dkimRecord(publicKey))}\n`);
  return 0;
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));
