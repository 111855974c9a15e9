// Reading a message's header section (RFC 5322 section 2.2).

// The header section as a list of {name, value}, in order, unfolded.
export function parseHeaders(message: Buffer): { name: string; value: string }[] {
  const end = message.indexOf('\r\n\r\n');
  const text = message.subarray(0, end === -1 ? message.length : end).toString('utf8');
  const fields: { name: string; value: string }[] = [];
  for (const line of text.split('\r\n')) {
    if (/^[ \t]/.test(line) && fields.length) {
      fields[fields.length - 1].value += ` ${line.trim()}`;
    } else {
      const colon = line.indexOf(':');
      if (colon > 0) fields.push({ name: line.slice(0, colon), value: line.slice(colon + 1).trim() });
    }
  }
  return fields;
}

export function headerValue(fields: { name: string; value: string }[], name: string): string | undefined {
  return fields.find((f) => f.name.toLowerCase() === name.toLowerCase())?.value;
}
