// What a benchmark target did with the bench message, read from its Maildir:
// every message sent is there, and the Authentication-Results it wrote on a
// sample of them say it evaluated SPF (fail: smtp-source connects from
// 127.0.0.1), DKIM (pass for sender.test) and DMARC (pass, on the aligned
// DKIM signature).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MaildirCheck {
  problems: string[];
  // One Authentication-Results field as stored, unfolded, to show.
  sample?: string;
}

// inspect: the target's own checks of a stored message, each problem a string.
export function checkMaildir(dir: string, expected: number, inspect: (message: string) => string[] = () => [], sampleSize = 20): MaildirCheck {
  const files = existsSync(dir) ? readdirSync(dir) : [];
  const problems = files.length === expected ? [] : [`${dir} holds ${files.length} messages, not ${expected}`];
  const sample = pick(files, sampleSize);
  // Each problem once, with how many of the sample have it and one of them.
  const found = new Map<string, { count: number; example: string }>();
  const note = (problem: string, name: string) => {
    const seen = found.get(problem);
    if (seen) seen.count++;
    else found.set(problem, { count: 1, example: name });
  };
  let shown: string | undefined;
  for (const name of sample) {
    const message = readFileSync(join(dir, name), 'utf8');
    for (const problem of inspect(message)) note(problem, name);
    // The topmost one: the target's own.
    const field = headerField(message, 'Authentication-Results');
    if (!field) {
      note('no Authentication-Results', name);
      continue;
    }
    shown ??= field;
    const wrong = wrongResults(field);
    if (wrong.length) note(`${wrong.join('; ')} in Authentication-Results: ${field}`, name);
  }
  for (const [problem, { count, example }] of found) problems.push(`${count} of ${sample.length} sampled (${example}, say): ${problem}`);
  return { problems, sample: shown };
}

// The first field of that name in the message's header, unfolded.
export function headerField(message: string, name: string): string | undefined {
  const header = message.slice(0, message.search(/\r?\n\r?\n/));
  const match = new RegExp(`^${name}:[ \\t]*(.*(?:\\r?\\n[ \\t].*)*)`, 'im').exec(header);
  return match?.[1].replace(/\r?\n[ \t]+/g, ' ');
}

// What differs from spf=fail, dkim=pass for sender.test, dmarc=pass.
function wrongResults(field: string): string[] {
  // Comments may hold anything but never a result: drop them, then the
  // authserv-id, and split into method=result ... properties.
  const results = field.replace(/\([^()]*\)/g, '').split(';').slice(1).map((r) => r.trim());
  const find = (method: string) => results.filter((r) => r.startsWith(`${method}=`));
  const wrong: string[] = [];
  if (!find('spf').some((r) => /^spf=fail\b/.test(r))) wrong.push('no spf=fail');
  // header.d names the signing domain; mailauth writes header.i=@domain instead.
  const dkim = find('dkim').filter((r) => /^dkim=pass\b/.test(r) && /\bheader\.(d=|i="?@)sender\.test\b/.test(r));
  if (!dkim.length) wrong.push('no dkim=pass for sender.test');
  if (!find('dmarc').some((r) => /^dmarc=pass\b/.test(r))) wrong.push('no dmarc=pass');
  return wrong;
}

function pick<T>(items: T[], count: number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy.slice(0, count);
}
