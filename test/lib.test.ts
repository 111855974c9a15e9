// Shared pieces: configuration checks and the lab addressing rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, readChoice, readEndpoint, readInteger } from '../services/lib/config.ts';
import { embeddedPort, isLabAddress, labAddress, loopbackTwin } from '../services/lib/addressing.ts';

test('endpoints: host:port with IPv4, [IPv6] or a name; errors name the variable', () => {
  assert.deepEqual(readEndpoint({}, 'DNS_LISTEN', '0.0.0.0:53'), { host: '0.0.0.0', port: 53 });
  assert.deepEqual(readEndpoint({ DNS_LISTEN: '127.0.2.53:10053' }, 'DNS_LISTEN', ''), { host: '127.0.2.53', port: 10053 });
  assert.deepEqual(readEndpoint({ X: '[::1]:53' }, 'X', ''), { host: '::1', port: 53 });
  assert.deepEqual(readEndpoint({ X: 'localhost:8053' }, 'X', ''), { host: 'localhost', port: 8053 });
  assert.throws(() => readEndpoint({ DNS_LISTEN: '127.0.0.1' }, 'DNS_LISTEN', ''), new ConfigError('DNS_LISTEN: "127.0.0.1" is not host:port (example: 0.0.0.0:53)'));
  assert.throws(() => readEndpoint({ DNS_LISTEN: '127.0.0.1:70000' }, 'DNS_LISTEN', ''), /DNS_LISTEN: "70000" is not a port number/);
});

test('numbers and choices are checked against their range', () => {
  assert.equal(readInteger({ N: '7' }, 'N', 1, 1, 10), 7);
  assert.equal(readInteger({}, 'N', 3, 1, 10), 3);
  assert.throws(() => readInteger({ N: '11' }, 'N', 1, 1, 10), /N: "11" is not a whole number from 1 to 10/);
  assert.throws(() => readInteger({ N: '1.5' }, 'N', 1, 1, 10), /N: "1.5"/);
  assert.equal(readChoice({ M: 'b' }, 'M', 'a', ['a', 'b']), 'b');
  assert.throws(() => readChoice({ M: 'c' }, 'M', 'a', ['a', 'b']), /M: "c" is not one of a, b/);
});

test('lab addresses and their loopback twins map both ways', () => {
  assert.equal(loopbackTwin('192.0.2.53'), '127.0.2.53');
  assert.equal(loopbackTwin('192.0.2.255'), '127.0.2.255');
  assert.equal(loopbackTwin('198.51.100.7'), '198.51.100.7', 'outside the lab: unchanged');
  assert.equal(labAddress('127.0.2.20'), '192.0.2.20');
  assert.equal(labAddress('::ffff:127.0.2.66'), '192.0.2.66', 'dual-stack form');
  assert.equal(labAddress('127.0.0.1'), '127.0.0.1');
  assert.equal(labAddress('127.0.2.256'), '127.0.2.256', 'not an address: unchanged');
  for (let host = 0; host < 256; host++) assert.equal(labAddress(loopbackTwin(`192.0.2.${host}`)), `192.0.2.${host}`);
  assert.ok(isLabAddress('192.0.2.10'));
  assert.ok(!isLabAddress('192.0.20.1'));
});

test('privileged ports move up by 10000 in the embedded lab, others stay', () => {
  assert.equal(embeddedPort(53), 10053);
  assert.equal(embeddedPort(25), 10025);
  assert.equal(embeddedPort(587), 10587);
  assert.equal(embeddedPort(8025), 8025);
  assert.equal(embeddedPort(1024), 1024);
});
