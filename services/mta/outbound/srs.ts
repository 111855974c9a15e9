// The Sender Rewriting Scheme (SRS0, as in postsrsd and libsrs2): a forwarder
// puts its own domain in the envelope sender, so SPF checks the forwarder,
// and can still route a bounce back to the original sender. The hash keeps
// others from using the forwarder as an open relay for bounces.
//   alice@sender.test -> SRS0=HHHH=TT=sender.test=alice@forwarder.test
import { createHmac, timingSafeEqual } from 'node:crypto';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const MAX_AGE_DAYS = 21;

function day(now: number): number {
  return Math.floor(now / 86_400_000) % 1024;
}

function stamp(now: number): string {
  const d = day(now);
  return BASE32[(d >> 5) & 31] + BASE32[d & 31];
}

function hash(secret: string, ...parts: string[]): string {
  return createHmac('sha1', secret).update(parts.join('').toLowerCase()).digest('base64').slice(0, 4);
}

export function srsForward(sender: string, forwarderDomain: string, secret: string, now = Date.now()): string {
  const at = sender.lastIndexOf('@');
  const local = sender.slice(0, at);
  const domain = sender.slice(at + 1);
  const tt = stamp(now);
  return `SRS0=${hash(secret, tt, domain, local)}=${tt}=${domain}=${local}@${forwarderDomain}`;
}

// The original sender for an SRS0 address, or why it is not one of ours.
export function srsReverse(address: string, secret: string, now = Date.now()): { sender: string } | { error: string } {
  const local = address.slice(0, address.lastIndexOf('@'));
  const match = /^SRS0[=+-]([^=]{4})=([A-Z2-7]{2})=([^=]+)=(.+)$/i.exec(local);
  if (!match) return { error: 'not an SRS0 address' };
  const [, given, tt, domain, user] = match;
  const expected = hash(secret, tt, domain, user);
  if (given.length !== expected.length || !timingSafeEqual(Buffer.from(given.toLowerCase()), Buffer.from(expected.toLowerCase()))) {
    return { error: 'SRS hash does not match' };
  }
  const then = BASE32.indexOf(tt[0].toUpperCase()) * 32 + BASE32.indexOf(tt[1].toUpperCase());
  if ((day(now) - then + 1024) % 1024 > MAX_AGE_DAYS) return { error: 'SRS address has expired' };
  return { sender: `${user}@${domain}` };
}
