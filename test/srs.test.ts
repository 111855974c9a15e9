// SRS: the forwarder's envelope sender for a forwarded message, and the way back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { srsForward, srsReverse } from '../services/mta/outbound/srs.ts';

const secret = 'lab-srs-secret';
const now = Date.UTC(2026, 10, 28);

test('a rewritten sender carries the original and routes back to it', () => {
  const rewritten = srsForward('alice@sender.test', 'forwarder.test', secret, now);
  assert.match(rewritten, /^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=sender\.test=alice@forwarder\.test$/);
  assert.deepEqual(srsReverse(rewritten, secret, now + 3 * 86_400_000), { sender: 'alice@sender.test' });
  // Some MTAs change the letter case of local parts.
  assert.deepEqual(srsReverse(rewritten.toLowerCase(), secret, now), { sender: 'alice@sender.test' });
});

test('a forged, altered or old SRS address is refused', () => {
  const rewritten = srsForward('alice@sender.test', 'forwarder.test', secret, now);
  assert.deepEqual(srsReverse(rewritten.replace('=alice@', '=mallory@'), secret, now), { error: 'SRS hash does not match' });
  assert.deepEqual(srsReverse(rewritten, 'another-secret', now), { error: 'SRS hash does not match' });
  assert.deepEqual(srsReverse(rewritten, secret, now + 30 * 86_400_000), { error: 'SRS address has expired' });
  assert.deepEqual(srsReverse('alice@forwarder.test', secret, now), { error: 'not an SRS0 address' });
});
