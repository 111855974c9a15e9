// A stored message's body for the console: its text and HTML parts, parsed
// by mailparser, and the HTML part as a page that can do nothing. Mail is
// written by strangers (the attacker instance is one), so that page comes
// with a Content-Security-Policy that forbids scripts, every load from
// elsewhere and form submission, and sandboxes it (opaque origin, no
// scripts, forms or popups) even when opened outside the console's
// sandboxed iframe. Inline images (cid:) arrive as data: URLs and show.
import type { ParsedMail } from 'mailparser';

export const MAIL_HTML_POLICY = [
  "default-src 'none'",
  'img-src data:',
  "style-src 'unsafe-inline'",
  'font-src data:',
  "form-action 'none'",
  "base-uri 'none'",
  "frame-ancestors 'self'",
  'sandbox',
].join('; ');

export interface MessageParts {
  text?: string; // the text part, or the HTML part made into text when there is none
  html: boolean; // whether there is an HTML part (GET .../html serves it)
  attachments: { filename?: string; contentType: string; size: number }[];
}

// mailparser is loaded when a person first opens a message, not at start:
// it is a tenth of what an MTA loads, and four MTAs start at once under Docker.
async function parse(raw: Buffer): Promise<ParsedMail> {
  const { simpleParser } = await import('mailparser');
  return simpleParser(raw, { skipTextToHtml: true, skipTextLinks: true, maxHtmlLengthToParse: 1024 * 1024 });
}

export async function messageParts(raw: Buffer): Promise<MessageParts> {
  const mail = await parse(raw);
  return {
    text: mail.text,
    html: typeof mail.html === 'string',
    attachments: mail.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, size: a.size })),
  };
}

// The HTML part as a page, or undefined when the message has none.
export async function htmlPage(raw: Buffer): Promise<Buffer | undefined> {
  const mail = await parse(raw);
  if (typeof mail.html !== 'string') return undefined;
  // Links open a new window, which the sandbox forbids: a click in a lab
  // message goes nowhere, rather than loading a page inside the console.
  return Buffer.from(`<!doctype html><base target="_blank">${mail.html}`, 'utf8');
}
