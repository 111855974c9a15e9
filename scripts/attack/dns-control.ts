// Item 3: the DNS control endpoint changed the lab's DNS for anyone. A web
// page of another origin set _dmarc.sender.test to p=none from a browser;
// DNS rebinding could reach it and the MTAs' APIs under a name of the
// attacker's; 4,000 overrides cost 176 MB. Each attack checks that nothing
// it tried is in force afterwards.
import type { AttackLab } from './lab.ts';
import { rawHttp } from './net.ts';
import { oneLine, outcome, type Attack } from './report.ts';

const OVERRIDE_LIMIT = 1000; // services/dns/zones.ts
// What the page of the adversarial run sent: DMARC off for sender.test.
const DMARC_OFF = JSON.stringify({ name: '_dmarc.sender.test', type: 'TXT', values: ['v=DMARC1; p=none'] });

const control = (lab: AttackLab) => `http://${lab.at('dns', 'control').host}:${lab.at('dns', 'control').port}`;
const inForce = async (lab: AttackLab): Promise<unknown[]> => (await fetch(`${control(lab)}/overrides`)).json();

function refusedWrite(name: string, headers: Record<string, string>, status: number, reason: string): Attack {
  return {
    item: 3,
    name,
    expected: `${status} (${reason}); no override in force after`,
    async run(lab) {
      const response = await fetch(`${control(lab)}/overrides`, { method: 'POST', headers, body: DMARC_OFF });
      const overrides = await inForce(lab);
      return outcome(response.status === status && overrides.length === 0, `${response.status} ${oneLine(await response.text())}; ${overrides.length} overrides in force`);
    },
  };
}

const rebinding: Attack = {
  item: 3,
  name: 'POST /overrides under another Host name (DNS rebinding)',
  expected: '421 (the endpoint answers only for an address, localhost or ns.lab.test); no override in force after',
  async run(lab) {
    const request = `POST /overrides HTTP/1.1\r\nHost: rebind.attacker.example:8053\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(DMARC_OFF)}\r\nConnection: close\r\n\r\n${DMARC_OFF}`;
    const answer = await rawHttp(lab.at('dns', 'control'), request);
    const overrides = await inForce(lab);
    return outcome(answer.status === 421 && overrides.length === 0, `${answer.status} ${oneLine(answer.body)}; ${overrides.length} overrides in force`);
  },
};

const tooMany: Attack = {
  item: 3,
  name: `${OVERRIDE_LIMIT + 1} overrides`,
  expected: `the first ${OVERRIDE_LIMIT} taken (200), the next one 429; all cleared after`,
  timeoutMs: 60_000,
  async run(lab) {
    const post = (i: number) =>
      fetch(`${control(lab)}/overrides`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: `h${i}.attacker.test`, type: 'A', values: ['192.0.2.99'] }) });
    const started = performance.now();
    try {
      let taken = 0;
      for (; taken < OVERRIDE_LIMIT && (await post(taken)).status === 200; taken++);
      const more = await post(OVERRIDE_LIMIT);
      const seconds = (performance.now() - started) / 1000;
      return outcome(taken === OVERRIDE_LIMIT && more.status === 429, `${taken} taken in ${seconds.toFixed(1)} s, then ${more.status} ${oneLine(await more.text())}`);
    } finally {
      await fetch(`${control(lab)}/overrides`, { method: 'DELETE' });
    }
  },
};

const apiRebinding: Attack = {
  item: 3,
  name: "the receiver's API under another Host name (DNS rebinding to read mail)",
  expected: '421 for GET /api/mailboxes with Host: rebind.attacker.example; 200 with the address',
  async run(lab) {
    const at = lab.at('receiver', 'api');
    const get = (host: string) => rawHttp(at, `GET /api/mailboxes HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    const foreign = await get(`rebind.attacker.example:${at.port}`);
    const own = await get(`${at.host}:${at.port}`);
    return outcome(foreign.status === 421 && own.status === 200, `${foreign.status} ${oneLine(foreign.body)}; with the address: ${own.status}`);
  },
};

export const attacks: Attack[] = [
  refusedWrite('POST /overrides from a page of another origin', { origin: 'http://evil.example', 'content-type': 'application/json' }, 403, 'not from web pages of other origins'),
  refusedWrite('POST /overrides as text/plain (what a page sends without a preflight)', { 'content-type': 'text/plain' }, 415, 'JSON only'),
  rebinding,
  tooMany,
  apiRebinding,
];
