// Students' DKIM keys, at the sender (classroom mode). A student makes a key
// pair for a selector of their own domain through the API; the private key
// stays here, in MTA_DATA_DIR/classroom/dkim/<domain>/<selector>.pem (0600),
// and the answer is the public record to publish in their zone, which is
// their work. From then on the sender signs their mail with every key they
// have (sign.ts asks keysFor); a new key for a selector replaces the old one.
// Keys are kept across restarts; a private key never leaves this process.
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Classroom } from '../../lib/classroom.ts';
import { ConfigError } from '../../lib/config.ts';
import { HttpError } from '../../lib/http.ts';
import { replaceFile } from '../../lib/durable.ts';
import type { Signature } from '../outbound/sign.ts';

export const ALGORITHMS = ['rsa-2048', 'ed25519'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];
const SELECTOR = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/; // one DNS label: also a file name
const MAX_SELECTORS = 10; // per student: a key is a few kilobytes, and made on demand
// Keys made per student and minute: a lesson needs a few; a loop making them
// as fast as it can (14 RSA keys a second) slowed the other students' mail.
const KEYS_PER_MINUTE = 10;
const TTL = 300;

export interface KeyView {
  domain: string;
  selector: string;
  algorithm: Algorithm;
  name: string; // s1._domainkey.ana.test
  record: string; // v=DKIM1; k=rsa; p=...
  zoneLine: string; // s1._domainkey 300 TXT "v=DKIM1; ..."
}

interface Key {
  selector: string;
  pem: Buffer;
  publicKey: KeyObject;
}

const generate = promisify(generateKeyPair);

export class StudentKeys {
  private dir: string;
  private keys = new Map<string, Map<string, Key>>(); // domain -> selector -> key
  private making = new Set<string>(); // domains with a key being made
  private made = new Map<string, number[]>(); // domain -> when its keys of the last minute were made

  // Reads the keys made before, for the class's domains.
  constructor(classroom: Classroom, dir: string) {
    this.dir = dir;
    for (const { domain } of classroom.students) {
      const selectors = new Map<string, Key>();
      let files: string[] = [];
      try {
        files = readdirSync(join(dir, domain)).filter((f) => SELECTOR.test(f.replace(/\.pem$/, '')) && f.endsWith('.pem'));
      } catch {
        // no keys yet
      }
      for (const file of files.sort()) {
        const pem = readFileSync(join(dir, domain, file));
        let publicKey: KeyObject;
        try {
          publicKey = createPublicKey(createPrivateKey(pem));
        } catch (error) {
          throw new ConfigError(`${join(dir, domain, file)}: not a private key (${(error as Error).message}): remove it, and make the student a new one`);
        }
        selectors.set(file.slice(0, -4), { selector: file.slice(0, -4), pem, publicKey });
      }
      this.keys.set(domain, selectors);
    }
  }

  // A new key pair for a selector of a student's domain; replaces the old one.
  async make(domain: string, selector: unknown, algorithm: unknown): Promise<KeyView> {
    if (typeof selector !== 'string' || !SELECTOR.test(selector)) throw new HttpError(400, `"selector" must be one DNS label: lower-case letters, digits and hyphens, like "s1" (got ${JSON.stringify(selector)})`);
    if (!ALGORITHMS.includes(algorithm as Algorithm)) throw new HttpError(400, `"algorithm" must be ${ALGORITHMS.join(' or ')} (got ${JSON.stringify(algorithm)})`);
    const selectors = this.keys.get(domain)!;
    if (!selectors.has(selector) && selectors.size >= MAX_SELECTORS) {
      throw new HttpError(409, `${domain} has ${MAX_SELECTORS} selectors already (${[...selectors.keys()].join(', ')}): make a new key for one of them instead`);
    }
    if (this.making.has(domain)) throw new HttpError(429, `a key for ${domain} is being made: try again when it is done`, { 'retry-after': '1' });
    const recent = (this.made.get(domain) ?? []).filter((at) => at > Date.now() - 60_000);
    this.made.set(domain, recent);
    if (recent.length >= KEYS_PER_MINUTE) {
      const wait = Math.ceil((recent[0] + 60_000 - Date.now()) / 1000);
      throw new HttpError(429, `${KEYS_PER_MINUTE} keys for ${domain} in the last minute: try again in ${wait} s`, { 'retry-after': String(wait) });
    }
    recent.push(Date.now());
    this.making.add(domain);
    try {
      const { privateKey, publicKey } = algorithm === 'ed25519' ? await generate('ed25519') : await generate('rsa', { modulusLength: 2048 });
      const pem = Buffer.from(privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
      await this.write(domain, selector, pem);
      selectors.set(selector, { selector, pem, publicKey });
      return view(domain, selectors.get(selector)!);
    } finally {
      this.making.delete(domain);
    }
  }

  // The keys of these domains, public halves only.
  list(domains: string[]): KeyView[] {
    return domains.flatMap((domain) => [...(this.keys.get(domain)?.values() ?? [])].map((key) => view(domain, key)));
  }

  // What the signer signs a student's mail with (sign.ts): every selector.
  keysFor(domain: string): Signature[] | undefined {
    const selectors = this.keys.get(domain);
    if (!selectors?.size) return undefined;
    return [...selectors.values()].map((key) => ({ domain, selector: key.selector, canonicalization: 'relaxed/relaxed', privateKey: key.pem }));
  }

  // Durable before it is used: a temporary file, fsynced, renamed, the directory fsynced.
  private async write(domain: string, selector: string, pem: Buffer): Promise<void> {
    const dir = join(this.dir, domain);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    await replaceFile(join(dir, `${selector}.pem`), pem);
  }
}

function view(domain: string, key: Key): KeyView {
  const ed25519 = key.publicKey.asymmetricKeyType === 'ed25519';
  // p=: RSA's DER SubjectPublicKeyInfo (RFC 6376 3.6.1), Ed25519's bare 32 bytes (RFC 8463 4.2).
  const p = ed25519 ? Buffer.from(key.publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64') : key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
  const record = `v=DKIM1; k=${ed25519 ? 'ed25519' : 'rsa'}; p=${p}`;
  return {
    domain,
    selector: key.selector,
    algorithm: ed25519 ? 'ed25519' : 'rsa-2048',
    name: `${key.selector}._domainkey.${domain}`,
    record,
    // One string of any length: the zone syntax splits it at 255 bytes on the wire.
    zoneLine: `${key.selector}._domainkey ${TTL} TXT "${record}"`,
  };
}
