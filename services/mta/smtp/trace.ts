// The trace header fields a final-delivery MTA prepends (RFC 5321 section
// 4.4, RFC 9228 Delivered-To), above mailauth's Received-SPF and
// Authentication-Results.

export interface TraceInfo {
  hostname: string; // this MTA
  sessionId: string;
  clientAddress: string; // lab address
  clientHostname?: string; // from its PTR record
  helo: string;
  tls?: { protocol?: string; cipher?: string };
  authenticated: boolean;
  mailFrom: string;
  recipient?: string; // named in "for" when the message has exactly one
  date?: Date;
}

// "with" keywords of RFC 3848: SMTP, ESMTP, plus S for TLS and A for AUTH.
export function receivedHeader(info: TraceInfo): string {
  const protocol = `ESMTP${info.tls ? 'S' : ''}${info.authenticated ? 'A' : ''}`;
  const from = `from ${info.helo || 'unknown'} (${info.clientHostname ? `${info.clientHostname} ` : ''}[${info.clientAddress}])`;
  const tls = info.tls ? ` (${info.tls.protocol} ${info.tls.cipher})` : '';
  return (
    `Received: ${from}\r\n` +
    `\tby ${info.hostname} (mail-lab) with ${protocol}${tls} id ${info.sessionId}\r\n` +
    `\t${info.recipient ? `for <${info.recipient}>; ` : ''}${rfc5322Date(info.date ?? new Date())}\r\n`
  );
}

export function traceHeaders(info: TraceInfo, authHeaders: string): string {
  return `Return-Path: <${info.mailFrom}>\r\nDelivered-To: ${info.recipient}\r\n${receivedHeader(info)}${authHeaders}`;
}

// RFC 5322 section 3.3: "Sat, 28 Nov 2026 14:05:09 +0000".
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace('GMT', '+0000');
}
