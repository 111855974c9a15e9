// DKIM signing with mailauth, for every From domain the instance holds keys
// for: RSA and Ed25519, several signatures on one message, canonicalization
// and signed header fields per selector. Keys are read once, at start, so a
// missing key stops the instance instead of a message going out unsigned.
// In classroom mode the sender also signs each student's mail with the keys
// they made (classroom/student-keys.ts), asked for at every message, so that
// a new key is used from the next message on.
import '../inbound/mailauth-keys.ts';
import '../inbound/mailauth-relaxed.ts';
import '../inbound/mailauth-parser.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { ConfigError } from '../../lib/config.ts';
import type { DkimSelector, Instance } from '../instance.ts';

export interface Signature extends DkimSelector {
  privateKey: Buffer;
}

export class Signer {
  private signatures = new Map<string, Signature[]>();
  private studentKeys?: { keysFor(domain: string): Signature[] | undefined };

  constructor(instance: Instance, keyDir: string, studentKeys?: { keysFor(domain: string): Signature[] | undefined }) {
    this.studentKeys = studentKeys;
    for (const [fromDomain, selectors] of instance.dkim) {
      this.signatures.set(
        fromDomain,
        selectors.map((s) => {
          const file = join(keyDir, s.domain, `${s.selector}.pem`);
          try {
            return { ...s, privateKey: readFileSync(file) };
          } catch {
            throw new ConfigError(`${instance.file}: dkim.${fromDomain}: no key ${file} (make one: npm run dkim:keygen -- ${s.domain} ${s.selector})`);
          }
        }),
      );
    }
  }

  // The DKIM-Signature header fields for a message whose From domain is given
  // ('' when the instance holds no key for it). Throws when signing fails:
  // the caller answers 451 rather than send the message unsigned.
  async sign(message: Buffer, fromDomain: string, time?: Date): Promise<string> {
    const signatures = this.signatures.get(fromDomain) ?? this.studentKeys?.keysFor(fromDomain);
    if (!signatures) return '';
    const result = await dkimSign(message, {
      signTime: time,
      signatureData: signatures.map((s) => ({
        signingDomain: s.domain,
        selector: s.selector,
        privateKey: s.privateKey,
        canonicalization: s.canonicalization,
        headerList: s.headers,
      })),
    } as unknown as Parameters<typeof dkimSign>[1]);
    if (result.errors?.length) {
      throw new Error(`DKIM signing for ${fromDomain} failed: ${result.errors.map((e) => `${e.signingDomain}/${e.selector}: ${e.err.message}`).join('; ')}`);
    }
    return result.signatures;
  }

  holdsKeysFor(domain: string): boolean {
    return this.signatures.has(domain);
  }
}
