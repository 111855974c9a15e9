// The messages a scenario sends: composed from the step (nodemailer's
// MailComposer, as a mail client would), signed with a lab key as the
// domain's MTA would sign it, changed after signing, or a stored copy
// readied for a replay.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import MailComposer from 'nodemailer/lib/mail-composer';
import { root } from '../lab/compose.ts';
import { LabError } from '../lab/errors.ts';
import type { Scenario, Step } from './schema.ts';

const keyDir = join(root, 'dns-zone', 'dkim');

// Unique per send, so that the runner finds this message's session.
// The domain is the author's, as a mail client makes it.
export function newMessageId(scenario: Scenario, stepNumber: number, step: Step): string {
  const domain = (step.from ?? '').split('@').pop()!.replace(/>.*$/, '') || 'scenario.test';
  return `<${scenario.name}.${stepNumber}.${randomBytes(6).toString('hex')}@${domain}>`;
}

export async function compose(scenario: Scenario, stepNumber: number, step: Step, messageId: string): Promise<Buffer> {
  const mail = new MailComposer({
    from: step.from,
    to: step.to,
    subject: step.subject ?? step.title,
    text: step.body ?? `Scenario ${scenario.name}, step ${stepNumber}: ${step.title}\n`,
    headers: step.headers,
    messageId,
    date: new Date(),
  });
  const built = crlf(await mail.compile().build());
  // From fields written by hand go on top, exactly as written.
  return step.fromFields ? Buffer.concat([Buffer.from(step.fromFields.map((f) => `From: ${f}\r\n`).join(''), 'utf8'), built]) : built;
}

// DKIM-Signature fields on top, one per key, with the lab's private keys.
export async function sign(message: Buffer, keys: Step['sign']): Promise<Buffer> {
  if (keys.length === 0) return message;
  const signatureData = keys.map(({ domain, selector, algorithm }) => {
    const file = join(keyDir, domain, `${selector}.pem`);
    try {
      return { signingDomain: domain, selector, privateKey: readFileSync(file), canonicalization: 'relaxed/relaxed', algorithm };
    } catch {
      throw new LabError(`no lab key ${file}`);
    }
  });
  const result = await dkimSign(message, { signatureData } as unknown as Parameters<typeof dkimSign>[1]);
  if (result.errors?.length) throw new LabError(`signing failed: ${result.errors.map((e) => e.err.message).join('; ')}`);
  return Buffer.concat([Buffer.from(result.signatures), message]);
}

// What an attacker (or a careless relay) changes after the signature was made.
export function tamper(message: Buffer, change: NonNullable<Step['tamper']>): Buffer {
  let { header, body } = split(message);
  const set = (name: string, value: string) => {
    const field = new RegExp(`^${name}:.*(\\r\\n[ \\t].*)*$`, 'im');
    header = field.test(header) ? header.replace(field, `${name}: ${value}`) : `${header}${name}: ${value}\r\n`;
  };
  if (change.subject !== undefined) set('Subject', change.subject);
  for (const [name, value] of Object.entries(change.headers ?? {})) set(name, value);
  if (change.body !== undefined) body = Buffer.from(change.body.replace(/\r?\n/g, '\r\n'), 'utf8').toString('latin1');
  return Buffer.from(`${header}\r\n${body}`, 'latin1');
}

// A stored copy as it left its sender: without the fields that final
// delivery adds (Return-Path, Delivered-To, RFC 5321 section 4.4).
export function forReplay(stored: Buffer): Buffer {
  const { header, body } = split(stored);
  const kept = header.split(/\r\n(?![ \t])/).filter((f) => f && !/^(Return-Path|Delivered-To):/i.test(f));
  return Buffer.from(`${kept.join('\r\n')}\r\n\r\n${body}`, 'latin1');
}

// Header and body as latin1 text: one character per byte, so nothing is lost.
function split(message: Buffer): { header: string; body: string } {
  const text = message.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  return end === -1 ? { header: `${text}\r\n`, body: '' } : { header: text.slice(0, end + 2), body: text.slice(end + 4) };
}

// MailComposer leaves the text's bare LFs for the transport to fix; the
// signature must be made over what goes on the wire.
const crlf = (message: Buffer) => Buffer.from(message.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
