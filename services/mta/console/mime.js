// RFC 2047 encoded words ("=?UTF-8?B?...?=", "=?ISO-8859-1?Q?...?=") in
// header values, decoded for display; the console keeps the raw value beside
// it (a title, the Headers tab). The browser's TextDecoder knows the charsets.

const WORD = /=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=/g;

function bytesOf(encoding, text) {
  if (encoding.toUpperCase() === 'B') {
    const digits = text.replace(/=+$/, '');
    const binary = atob(digits + '='.repeat((4 - (digits.length % 4)) % 4)); // throws on bad base64
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }
  // Q: "_" is a space, =XX a byte, anything else itself (RFC 2047 section 4.2).
  const out = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '_') out.push(0x20);
    else if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(c.charCodeAt(0) & 0xff);
  }
  return Uint8Array.from(out);
}

// The value with its encoded words decoded. Whitespace between two encoded
// words goes (section 6.2); adjacent words in one charset are decoded as one
// run of bytes, since a character may be split across them. A word that
// cannot be decoded (an unknown charset, bad base64) stays as it was.
export function decodeWords(value) {
  if (typeof value !== 'string' || !value.includes('=?')) return value;
  let out = '';
  let last = 0; // end of what has been copied
  let run; // { charset, chunks: Uint8Array[], raw }: encoded words not yet decoded
  const flush = () => {
    if (!run) return;
    try {
      const size = run.chunks.reduce((n, c) => n + c.length, 0);
      const all = new Uint8Array(size);
      let at = 0;
      for (const c of run.chunks) all.set(c, (at += c.length) - c.length);
      out += new TextDecoder(run.charset).decode(all);
    } catch {
      out += run.raw;
    }
    run = undefined;
  };
  for (const match of value.matchAll(WORD)) {
    const between = value.slice(last, match.index);
    const [raw, charset, encoding, text] = match;
    let bytes;
    try {
      bytes = bytesOf(encoding, text);
    } catch {
      bytes = undefined;
    }
    const adjacent = run !== undefined && /^[ \t\r\n]*$/.test(between);
    if (adjacent && bytes && run.charset.toLowerCase() === charset.toLowerCase()) {
      run.chunks.push(bytes);
      run.raw += between + raw;
    } else {
      flush();
      if (!adjacent || !bytes) out += between;
      if (bytes) run = { charset, chunks: [bytes], raw };
      else out += raw;
    }
    last = match.index + raw.length;
  }
  flush();
  return out + value.slice(last);
}
