// The author check, before DMARC: exactly one From field holding one mailbox
// whose domain is a host name, read the same way by this strict reading and
// by mailauth. DMARC protects the domain a person reads in From:; when the
// field can be read more than one way (two fields, two mailboxes, syntax
// that mail clients and mailauth take apart differently) or names no domain
// at all, DMARC either is not evaluated or checks a domain the reader never
// sees. RFC 5322 section 3.6 allows exactly one From field; RFC 9989 section
// 5.3.1 lets a receiver refuse a message whose Author Domain it cannot
// determine.
import { domainToASCII } from 'node:url';

export interface Author {
  fields: number; // From fields in the header section
  mailboxes: string[]; // the addresses mailauth read from them
  domain?: string; // the one author domain, when the check passes (A-labels, lower case)
  problem?: string; // why the author is unclear, in words a student can follow
}

// mailauth's reasons for not evaluating DMARC, in words.
const SKIPPED: Record<string, string> = {
  'multiple-from-fields': 'more than one From field',
  'multiple-author-domains': 'mailboxes of more than one domain',
  'invalid-author-domain': 'a mailbox without a usable domain',
  'no-author-domain': 'no mailbox with a domain',
};

export function skippedWhy(reason: string | undefined): string {
  return reason ? `${SKIPPED[reason] ?? reason} (${reason})` : 'no From domain';
}

// `values`: each From field's unfolded value; `mailboxes`: what mailauth read
// from them; `dmarcDomain`: the author domain mailauth evaluated DMARC for, if any.
export function checkAuthor(values: string[], mailboxes: string[], dmarcDomain: string | undefined): Author {
  const author = { fields: values.length, mailboxes };
  const unclear = (problem: string): Author => ({ ...author, problem });
  if (values.length === 0) return unclear('no From field: RFC 5322 section 3.6 requires exactly one, and without it there is no domain whose DMARC policy could apply');
  if (values.length > 1) {
    return unclear(`${values.length} From fields (${values.map(quote).join(', ')}): RFC 5322 section 3.6 allows exactly one; a mail client shows one of them, and DMARC cannot tell which`);
  }
  const read = readMailboxes(values[0]);
  if (typeof read === 'string') return unclear(`the From field ${quote(values[0])} ${read}; mailauth read ${describe(mailboxes)}, a mail client may show something else`);
  if (read.length !== 1) {
    return unclear(`the From field holds ${read.length === 0 ? 'no mailbox' : `${read.length} mailboxes (${read.join(', ')})`}: DMARC protects one author domain, so a message must name exactly one author`);
  }
  const domain = hostDomain(read[0].slice(read[0].lastIndexOf('@') + 1));
  if (!domain) return unclear(`the From address ${read[0]} has no host name after the @, so no domain's DMARC policy can apply to it`);
  if (domain !== dmarcDomain?.toLowerCase()) {
    return unclear(`the From field says ${domain}, but mailauth read ${dmarcDomain ? `the author domain as ${dmarcDomain}` : describe(mailboxes)}: DMARC would judge a domain the reader does not see`);
  }
  return { ...author, domain };
}

const describe = (mailboxes: string[]) => (mailboxes.length ? mailboxes.join(', ') : 'no mailbox');

// A field's value as the reason quotes it: a client chose it, so not all of a long one.
const quote = (value: string) => JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);

// A domain written as a host name (RFC 1123 labels; U-labels allowed, RFC
// 6532), in A-labels and lower case; undefined for anything else.
function hostDomain(text: string): string | undefined {
  if (text === '' || /[\s[\]]|^\.|\.$/.test(text)) return undefined;
  const ascii = domainToASCII(text);
  if (!ascii) return undefined;
  const labels = ascii.split('.');
  return labels.every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l)) ? ascii : undefined;
}

type Token = { kind: 'word' | 'quoted' | 'special'; text: string };

// The mailboxes of one From value in RFC 5322 syntax without its obsolete
// forms: a list of `addr-spec` or `[display-name] <addr-spec>`, or one group
// `name: mailbox-list;` (RFC 6854). Comments are dropped. A string says what
// is wrong.
function readMailboxes(value: string): string[] | string {
  const tokens = tokenize(value);
  if (typeof tokens === 'string') return tokens;
  let at = 0;
  const peek = () => tokens[at];
  const special = (c: string) => peek()?.kind === 'special' && peek().text === c;
  // A group: a display name and a colon before any angle bracket or @.
  const colon = tokens.findIndex((t) => t.kind === 'special' && t.text === ':');
  const firstOther = tokens.findIndex((t) => t.kind === 'special' && t.text !== ':');
  let end = tokens.length;
  if (colon !== -1 && (firstOther === -1 || colon < firstOther)) {
    if (colon === 0) return 'has a group without a name';
    if (!(tokens.at(-1)?.kind === 'special' && tokens.at(-1)!.text === ';')) return 'has a group that does not end with ";"';
    at = colon + 1;
    end = tokens.length - 1;
  }
  const mailboxes: string[] = [];
  const addrSpec = (): string | undefined => {
    const local = peek();
    if (!local || local.kind === 'special') return undefined;
    at++;
    if (!special('@')) return undefined;
    at++;
    const domain = peek();
    if (!domain || domain.kind !== 'word') return undefined;
    at++;
    return `${local.kind === 'quoted' ? `"${local.text}"` : local.text}@${domain.text}`;
  };
  while (at < end) {
    let address: string | undefined;
    const start = at;
    // [display-name] <addr-spec>
    while (at < end && peek().kind !== 'special') at++;
    if (at < end && special('<')) {
      at++;
      address = addrSpec();
      if (!address || !special('>')) return 'is not a mailbox list in RFC 5322 syntax (an address in <> must be local@domain)';
      at++;
    } else {
      at = start;
      address = addrSpec();
      if (!address) return 'is not a mailbox list in RFC 5322 syntax';
    }
    mailboxes.push(address);
    if (at === end) break;
    if (!special(',')) return `is not a mailbox list in RFC 5322 syntax (${JSON.stringify(tokens.slice(at).map((t) => t.text).join(' '))} after ${address})`;
    at++;
    if (at === end) return 'ends with a comma (an empty list member)';
  }
  return mailboxes;
}

// Words (atoms and dot-atoms), quoted strings and the specials that matter
// here; comments and white space only separate.
function tokenize(value: string): Token[] | string {
  const tokens: Token[] = [];
  let i = 0;
  while (i < value.length) {
    const c = value[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(') {
      let depth = 0;
      for (; i < value.length; i++) {
        if (value[i] === '\\') i++;
        else if (value[i] === '(') depth++;
        else if (value[i] === ')' && --depth === 0) break;
      }
      if (depth !== 0) return 'has a comment that is never closed';
      i++;
    } else if (c === '"') {
      let text = '';
      for (i++; i < value.length && value[i] !== '"'; i++) text += value[i] === '\\' ? value[++i] : value[i];
      if (i >= value.length) return 'has a quoted string that is never closed';
      i++;
      tokens.push({ kind: 'quoted', text });
    } else if ('<>@:;,'.includes(c)) {
      tokens.push({ kind: 'special', text: c });
      i++;
    } else if ('[]\\)'.includes(c)) {
      return `has ${JSON.stringify(c)} where RFC 5322 allows none (a domain literal, or stray punctuation)`;
    } else {
      const word = /^[^\s()<>@:;,"[\]\\]+/.exec(value.slice(i))![0];
      tokens.push({ kind: 'word', text: word });
      i += word.length;
    }
  }
  return tokens;
}
