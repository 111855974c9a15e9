// POST /api/direct (services/mta/api/direct.ts): the door through which the
// scenario runner sends direct: steps when the lab runs in Docker. The
// instance speaks SMTP from its own address to the lab MX named, and nobody
// but the machine that runs the lab can make it: no lab host, no web page,
// no address outside the lab.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';

let lab: TestLab;
let receiver: LabMta;
let attacker: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  attacker = await lab.start('attacker');
});
after(() => lab.close());

interface Sent {
  status: number;
  body: { code?: number; text?: string; error?: string };
}

// POST to an instance's API, from the given source address.
function post(at: LabMta, body: unknown, { from = '127.0.0.1', headers = {} as Record<string, string> } = {}): Promise<Sent> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: at.host, port: at.apiPort, path: '/api/direct', method: 'POST', localAddress: from, headers: { 'content-type': 'application/json', ...headers } },
      (response) => {
        let data = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (data += chunk));
        response.on('end', () => resolve({ status: response.statusCode!, body: JSON.parse(data) }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

const mx = { address: '192.0.2.20', hostname: 'mx.receiver.test' };
let counter = 0;
function spoof(to = 'alice@receiver.test') {
  const messageId = `<direct-${++counter}.${Date.now()}@sender.test>`;
  const message = `From: CEO <ceo@sender.test>\r\nTo: ${to}\r\nSubject: wire the money\r\nMessage-ID: ${messageId}\r\n\r\nToday, please.\r\n`;
  return { messageId, body: { mx, envelope: { from: 'mallory@attacker.test', to: [to] }, message: Buffer.from(message).toString('base64') } };
}

async function sessionOf(messageId: string) {
  const base = `http://${receiver.host}:${receiver.apiPort}/api/sessions`;
  const [summary] = await (await fetch(`${base}?messageId=${encodeURIComponent(messageId)}`)).json();
  return summary && (await (await fetch(`${base}/${summary.id}`)).json());
}

test("the instance sends from its own lab address and answers with the MX's final reply", async () => {
  const { messageId, body } = spoof();
  const sent = await post(attacker, body);
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  // sender.test publishes p=reject: the spoof is refused, and the refusal is the answer.
  assert.equal(sent.body.code, 550);
  assert.match(sent.body.text!, /^550 5\.7\.1 /);
  const record = await sessionOf(messageId);
  assert.equal(record.client.address, '192.0.2.66', "the receiver saw the attacker's lab address");
  assert.equal(record.client.helo, 'mta.attacker.test');
  assert.deepEqual(record.transactions[0].envelope, { mailFrom: 'mallory@attacker.test', rcptTo: ['alice@receiver.test'] });
  // SPF passes for the attacker's own envelope domain, from its own address; DMARC does not.
  assert.equal(record.transactions[0].checks.spf.result, 'pass');
  assert.equal(record.transactions[0].checks.dmarc.result, 'fail');
});

test('nobody else can make an instance send: lab hosts, web pages and non-JSON bodies are refused', async () => {
  const { messageId, body } = spoof();
  // The receiver's own loopback twin stands for the lab host 192.0.2.20.
  const fromLabHost = await post(attacker, body, { from: receiver.host });
  assert.equal(fromLabHost.status, 403);
  assert.match(fromLabHost.body.error!, /not for 192\.0\.2\.20/);
  const fromPage = await post(attacker, body, { headers: { origin: 'http://evil.example' } });
  assert.equal(fromPage.status, 403);
  const form = await post(attacker, body, { headers: { 'content-type': 'text/plain' } });
  assert.equal(form.status, 415);
  assert.equal(await sessionOf(messageId), undefined, 'nothing reached the receiver');
});

test('delivery stays in the lab, and a bad request says what is wrong', async () => {
  const { body } = spoof();
  const outside = await post(attacker, { ...body, mx: { address: '203.0.113.25', hostname: 'mx.example.com' } });
  assert.equal(outside.status, 400);
  assert.match(outside.body.error!, /mx\.address must be a lab address/);
  assert.match((await post(attacker, { ...body, envelope: { from: 'a@b.test', to: [] } })).body.error!, /envelope\.to/);
  assert.match((await post(attacker, { ...body, message: 42 })).body.error!, /message: the whole message, base64/);
  assert.equal((await post(attacker, '{not json')).status, 400);
  // A lab address where no MX listens: the connection failure, as a 502.
  const nobody = await post(attacker, { ...body, mx: { address: '192.0.2.99', hostname: 'nobody.lab.test' } });
  assert.equal(nobody.status, 502);
  assert.match(nobody.body.error!, /nobody\.lab\.test \[192\.0\.2\.99\]/);
  // Other methods stay read-only.
  assert.equal((await fetch(`http://${attacker.host}:${attacker.apiPort}/api/sessions`, { method: 'POST' })).status, 405);
});
