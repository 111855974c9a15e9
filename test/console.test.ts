// The web console in a real browser (Debian's chromium, headless): a message
// submitted to the sender shows up live in the receiver's console, and its
// "why" view tells its story; a malicious HTML message runs nothing, loads
// nothing and submits nothing; the browser itself reaches nothing beyond
// loopback. With SCREENSHOTS=1 it also writes the README's pictures to
// docs/screenshots/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { authenticate, sealMessage } from 'mailauth';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import type { Page } from 'playwright-core';
import { LabResolver } from '../services/lib/resolver.ts';
import { beyondLoopback, openBrowser } from './support/browser.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { api, message, submit, waitFor } from './support/mail.ts';

const screenshots = process.env.SCREENSHOTS === '1' ? new URL('../docs/screenshots/', import.meta.url).pathname : undefined;

let lab: TestLab;
let receiver: LabMta;
let sender: LabMta;
let attacker: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
  attacker = await lab.start('attacker');
});
after(() => lab.close());

const consoleUrl = () => `http://${receiver.host}:${receiver.apiPort}/`;

async function shoot(page: Page, name: string, fullPage = false) {
  if (!screenshots) return;
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: `${screenshots}${name}.png`, fullPage });
}

// The stored message id of the message with this Message-ID, once it is stored.
function storedId(messageId: string): Promise<string> {
  return waitFor(`${messageId} stored`, async () => {
    const sessions = await api<{ messageIds: string[]; deliveries: { id: string }[] }[]>(receiver, `/api/sessions?messageId=${encodeURIComponent(messageId)}`);
    return sessions[0]?.deliveries[0]?.id;
  });
}

test('a submitted message appears live in the receiver console; its why view shows the badges and the SMTP conversation', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const page = await browser.newPage();
  const response = await page.goto(consoleUrl());
  assert.match(response!.headers()['content-security-policy'], /script-src 'self'/);
  await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
  await page.evaluate(() => Object.assign(window, { loadedOnce: true })); // gone if the page reloads

  const reply = await submit(sender, {
    user: 'alice@sender.test',
    mailFrom: 'alice@sender.test',
    to: ['bob@receiver.test'],
    data: message('Alice <alice@sender.test>', 'bob@receiver.test', 'Lunch on Friday'),
  });
  assert.equal(reply.code, 250, reply.text);
  const row = page.locator('tbody tr', { hasText: 'Lunch on Friday' });
  await row.waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => (window as { loadedOnce?: boolean }).loadedOnce), true, 'it came without a reload');
  assert.match(await row.innerText(), /✓ SPF pass\s+✓ DKIM pass\s+✓ DMARC pass\s+– ARC none[\s\S]*✓ Inbox/);

  // Two spoofs from the attacker, for the lesson (and the pictures): one
  // refused (p=reject), one filed as Junk (p=quarantine).
  for (const [from, subject] of [['ceo@sender.test', 'Urgent wire transfer'], ['billing@quarantine.test', 'Your invoice is overdue']]) {
    await submit(attacker, { user: 'mallory@attacker.test', mailFrom: from, to: ['bob@receiver.test'], data: message(from, 'bob@receiver.test', subject) });
  }
  await page.locator('tbody tr', { hasText: 'Urgent wire transfer' }).getByText('✗ Rejected 550 5.7.1').waitFor({ timeout: 15_000 });
  await page.locator('tbody tr', { hasText: 'Your invoice is overdue' }).getByText('⚠ Junk').waitFor({ timeout: 15_000 });

  // Once the senders hang up, each session's record is complete (QUIT and
  // all). The attacker first: its bounce for the refused spoof holds a
  // connection to the sender's MX, which the sender would wait for.
  await lab.stop('attacker');
  await lab.stop('sender');
  await waitFor('sessions ended', async () => {
    const page = await api<{ items: { endedAt?: string; transactions: unknown[] }[] }>(receiver, '/api/sessions/page');
    return page.items.flatMap((s) => s.transactions).length === 3 && page.items.every((s) => s.endedAt) ? true : undefined;
  });
  await page.reload();
  await page.locator('tbody tr', { hasText: 'Lunch on Friday' }).waitFor();
  await shoot(page, 'console-sessions');

  await page.getByRole('link', { name: /^INBOX/ }).click();
  await page.getByRole('heading', { name: 'bob@receiver.test / INBOX' }).waitFor();
  await shoot(page, 'console-mailbox');

  await page.getByRole('link', { name: 'Lunch on Friday' }).click();
  await page.getByRole('heading', { name: 'The SMTP conversation' }).waitFor();
  const verdict = await page.locator('.verdict').innerText();
  assert.match(verdict, /✓ SPF pass\s+✓ DKIM pass\s+✓ DMARC pass\s+– ARC none\s+✓ Inbox/);
  const transcript = await page.locator('.transcript').innerText();
  for (const line of [/S:\s*220 mx\.receiver\.test ESMTP/, /C:\s*EHLO mta\.sender\.test/, /C:\s*STARTTLS/, /C:\s*MAIL FROM:<alice@sender\.test>/, /C:\s*RCPT TO:<bob@receiver\.test>/, /S:\s*354 /, /\(the message: [\d,]+ bytes, “Lunch on Friday”/, /S:\s*250 2\.6\.0 Delivered to INBOX/]) {
    assert.match(transcript, line);
  }
  const story = await page.locator('.panel').innerText();
  assert.match(story, /_dmarc\.sender\.test\s+TXT\s+v=DMARC1; p=reject/);
  assert.match(story, /SPF: the MAIL FROM domain\s+sender\.test\s+✓ SPF pass\s+relaxed \(aspf\): sender\.test = sender\.test: identical\s+✓ aligned and passing/);
  assert.match(story, /DMARC policy published: p=reject\.\s+Policy applied to sender\.test: reject\./);
  await shoot(page, 'console-why', true);

  // The refused spoof: its session tells why it was refused.
  await page.goto(`${consoleUrl()}#/sessions/reject`);
  await page.getByRole('link', { name: /\d\d:\d\d/ }).first().click();
  await page.getByRole('heading', { name: /DMARC: does an authenticated domain match/ }).first().waitFor(); // one per message: the attacker may send both on one connection
  const spoof = await page.locator('main').innerText();
  assert.match(spoof, /✗ SPF fail\s+May the MAIL FROM domain sender\.test send from this address\?/);
  assert.match(spoof, /✗ Rejected 550 5\.7\.1\s+DMARC fail for sender\.test \(p=reject\)/);
  assert.match(spoof, /S:\s*550 5\.7\.1 Message rejected/);
  await shoot(page, 'console-why-spoof', true);
});

test('a malicious HTML message runs no script, loads nothing and submits no form', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  // Everything the message tries to reach comes here; nothing may.
  const requests: string[] = [];
  const watcher: Server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    response.setHeader('content-type', 'text/html');
    response.end('<link rel="icon" href="data:,">gotcha'); // no favicon request after the probe
  });
  await new Promise<void>((resolve) => watcher.listen(0, '127.0.0.1', resolve));
  t.after(() => watcher.close());
  const trap = `http://127.0.0.1:${(watcher.address() as { port: number }).port}`;
  // The browser can reach the watcher: silence later means blocked, not lost.
  const probe = await browser.newPage();
  await probe.goto(`${trap}/reachable`);
  await probe.close();
  assert.deepEqual(requests.splice(0), ['GET /reachable']);

  const html = [
    '<html><head>',
    `<meta http-equiv="refresh" content="1;url=${trap}/meta-refresh">`,
    `<link rel="stylesheet" href="${trap}/link.css"><link rel="prefetch" href="${trap}/prefetch">`,
    `<style>@import url(${trap}/import.css); body { background: url(${trap}/background.png); }</style>`,
    `<script src="${trap}/external.js"></script>`,
    "<script>document.body.dataset.script = 'ran'; alert('script');</script>",
    '</head><body onload="document.body.dataset.onload = \'ran\'; document.forms[0].submit()">',
    `<p id="visible">Harmless looking text, <a id="link" href="${trap}/link">and a link</a></p>`,
    `<img src="${trap}/remote.png" alt="remote">`,
    `<img src="cid:nothing" onerror="document.body.dataset.onerror = 'ran'; fetch('${trap}/onerror'); alert('onerror')">`,
    `<form action="${trap}/form" method="post"><input name="secret" value="1" autofocus onfocus="this.form.submit()"></form>`,
    `<iframe src="${trap}/frame"></iframe><object data="${trap}/object"></object><video poster="${trap}/poster.png"></video>`,
    '</body></html>',
  ].join('\r\n');
  const subject = `<img src="${trap}/subject.png"> & friends`;
  const data = [
    'From: mallory@attacker.test',
    'To: bob@receiver.test',
    `Subject: ${subject}`,
    'Message-ID: <evil@client.example>',
    'MIME-Version: 1.0',
    'Content-Type: text/html; charset=utf-8',
    '',
    html,
  ].join('\r\n');
  // Straight to the receiver's MX, from the attacker's address, as a stranger's mail comes.
  const reply = await submit({ host: receiver.host, submissionPort: receiver.mxPort }, { client: attacker.host, mailFrom: 'mallory@attacker.test', to: ['bob@receiver.test'], data });
  assert.equal(reply.code, 250, reply.text);
  const id = await storedId('<evil@client.example>');

  const page = await browser.newPage();
  const dialogs: string[] = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => undefined);
  });
  // The subject is shown as text, never as markup.
  await page.goto(`${consoleUrl()}#/sessions`);
  await page.locator('tbody td', { hasText: subject }).first().waitFor();
  assert.equal(await page.locator('main img').count(), 0);

  const framed = page.waitForResponse((r) => r.url().endsWith(`/api/messages/${encodeURIComponent(id)}/html`));
  await page.goto(`${consoleUrl()}#/message/${encodeURIComponent(id)}/html`);
  const policy = (await framed).headers()['content-security-policy'];
  assert.match(policy, /default-src 'none'/);
  assert.match(policy, /form-action 'none'/);
  assert.match(policy, /sandbox/);
  assert.equal(await page.locator('iframe.mail-html').getAttribute('sandbox'), '', 'sandboxed, with no allow-* token');
  const frame = page.frameLocator('iframe.mail-html');
  await frame.locator('#visible').waitFor(); // the message is shown ...
  await frame.locator('#link').click(); // a click on a link opens nothing either
  await page.waitForTimeout(2000); // ... and has had time for its refresh, onload, autofocus and images

  assert.deepEqual(requests, [], 'nothing reached the watcher');
  assert.deepEqual(dialogs, [], 'no dialog opened');
  const body = frame.locator('body');
  assert.equal(await body.getAttribute('data-script'), null, 'no inline script ran');
  assert.equal(await body.getAttribute('data-onload'), null, 'no onload handler ran');
  assert.equal(await body.getAttribute('data-onerror'), null, 'no onerror handler ran');
  assert.equal(await frame.locator('#visible').innerText(), 'Harmless looking text, and a link', 'the frame still shows the message: no refresh, no form submission, no link followed');
  assert.equal(browser.pages().length, 2, 'no window opened'); // the probe's page is closed: this one and the blank first one
  await shoot(page, 'console-html-sandbox');
});

test('the browser reaches loopback addresses and nothing else: names and other addresses go to the gate, refused', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const reached: string[] = [];
  const watcher: Server = createServer((request, response) => {
    reached.push(`${request.method} ${request.url}`);
    response.setHeader('content-type', 'text/html');
    response.end('<link rel="icon" href="data:,">here'); // no favicon request
  });
  await new Promise<void>((resolve) => watcher.listen(0, '127.0.0.1', resolve));
  t.after(() => watcher.close());
  const port = (watcher.address() as { port: number }).port;
  const page = await browser.newPage();
  const status = async (url: string) => (await page.goto(url).then((r) => String(r?.status()), (error: Error) => error.message.split('\n')[0]));

  assert.equal(await status(`http://127.0.0.1:${port}/direct`), '200', 'a loopback address is reached directly');
  // A page's own requests have no way out either.
  const fetched = await page.evaluate(async (url) => await fetch(url).then((r) => String(r.status), (e: Error) => e.message), 'http://203.0.113.7/fetch');
  assert.equal(fetched, 'Failed to fetch');
  // localhost is a name: not resolved, not reached, but handed to the gate.
  assert.equal(await status(`http://localhost:${port}/by-name`), '403');
  assert.equal(await status('http://203.0.113.7/'), '403'); // TEST-NET-3: an address beyond loopback
  assert.equal(await status('http://beyond.invalid/'), '403');
  assert.match(await status('https://beyond.invalid/'), /ERR_TUNNEL_CONNECTION_FAILED/);
  assert.deepEqual(reached, ['GET /direct'], 'only the loopback address reached the watcher');
  const refused = beyondLoopback(browser);
  for (const attempt of ['GET http://203.0.113.7/fetch', `GET http://localhost:${port}/by-name`, 'GET http://203.0.113.7/', 'GET http://beyond.invalid/', 'CONNECT beyond.invalid:443']) {
    assert.ok(refused.includes(attempt), `${attempt} went to the gate (it saw: ${refused.join(', ')})`);
  }
});

// What list.forwarder.test does with alice's message: checks it (DMARC
// passes), tags the subject (breaking the signature) and seals what it saw.
async function listCopy(subject: string): Promise<string> {
  const key = (domain: string) => readFileSync(new URL(`../dns-zone/dkim/${domain}/rsa2048.pem`, import.meta.url));
  const original = `From: Alice <alice@sender.test>\r\nTo: class@forwarder.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '-')}@sender.test>\r\n\r\nChapter 3.\r\n`;
  const signing = { signatureData: [{ signingDomain: 'sender.test', selector: 'rsa2048', privateKey: key('sender.test') }] };
  const signed = (await dkimSign(original, signing as unknown as Parameters<typeof dkimSign>[1])).signatures + original;
  const resolver = new LabResolver({ host: '127.0.2.53', port: lab.dnsPort });
  const seen = await authenticate(signed, { ip: '192.0.2.10', helo: 'mta.sender.test', sender: 'alice@sender.test', mta: 'list.forwarder.test', resolver: ((n: string, t: string) => resolver.resolve(n, t)) as never, disableBimi: true });
  const arc = seen.arc as { authResults: unknown; status: { result: string } };
  const changed = signed.replace(`Subject: ${subject}`, `Subject: [class] ${subject}`);
  const seal = await sealMessage(changed, { signingDomain: 'forwarder.test', selector: 'rsa2048', privateKey: key('forwarder.test'), authResults: arc.authResults, cv: arc.status.result } as never);
  return seal.toString() + changed;
}

test("the why view says whether an ARC override was granted and why, and when the author is unclear", async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const mx = { host: receiver.host, submissionPort: receiver.mxPort };
  const sessionOf = async (messageId: string, client: string) =>
    waitFor(`${messageId} from ${client}`, async () => (await api<{ id: string; client: string }[]>(receiver, `/api/sessions?messageId=${encodeURIComponent(messageId)}`)).find((s) => s.client === client)?.id);
  const story = async (id: string) => {
    const page = await browser.newPage();
    await page.goto(`${consoleUrl()}#/session/${encodeURIComponent(id)}`);
    await page.getByRole('heading', { name: 'Policy and decision' }).waitFor();
    const text = await page.locator('main').innerText();
    await page.close();
    return text;
  };

  // The list delivers its copy itself; then the attacker replays it.
  const copy = await listCopy('Homework week 5');
  assert.equal((await submit(mx, { client: '127.0.2.30', mailFrom: 'class-bounces@forwarder.test', to: ['bob@receiver.test'], data: copy })).code, 250);
  assert.equal((await submit(mx, { client: attacker.host, mailFrom: 'mallory@attacker.test', to: ['alice@receiver.test'], data: copy })).code, 550);
  const granted = await story(await sessionOf('<Homework-week-5@sender.test>', '192.0.2.30'));
  assert.match(granted, /Delivered by the sealer itself\? Yes: SPF passed for forwarder\.test, inside the sealer's domain forwarder\.test/);
  assert.match(granted, /ARC override granted: forwarder\.test is a trusted ARC sealer, .*and it delivered this copy/);
  assert.match(granted, /Decision path: arc-override\./);
  const declined = await story(await sessionOf('<Homework-week-5@sender.test>', '192.0.2.66'));
  assert.match(declined, /Delivered by the sealer itself\? No: the client 192\.0\.2\.66 is not forwarder\.test's: its reverse name is mta\.attacker\.test/);
  assert.match(declined, /ARC override not granted: forwarder\.test is trusted and saw dmarc=pass, but it did not deliver this copy/);
  assert.match(declined, /✗ Rejected 550 5\.7\.1/);

  // Two From fields: the author check speaks first, and DMARC was not evaluated.
  const twice = 'From: ceo@sender.test\r\nFrom: ceo@sender.test\r\nTo: alice@receiver.test\r\nSubject: twice\r\nMessage-ID: <twice@attacker.test>\r\n\r\nPay now.\r\n';
  assert.equal((await submit(mx, { client: attacker.host, mailFrom: 'mallory@attacker.test', to: ['alice@receiver.test'], data: twice })).code, 550);
  const unclear = await story(await sessionOf('<twice@attacker.test>', '192.0.2.66'));
  assert.match(unclear, /✗ From fail\s+Is the author clear: exactly one From field with one mailbox\?\s+2 From fields/);
  assert.match(unclear, /Here DMARC was not evaluated \(more than one From field \(multiple-from-fields\)\), so alignment decides nothing/);
  assert.match(unclear, /The author is unclear, which this instance's local policy \(ambiguousFrom\) decides on before DMARC\./);
  assert.match(unclear, /Decision path: author-reject\./);
  assert.doesNotMatch(unclear, /No DMARC policy applies/);
});

// Mail text the console shows: a subject too long for any window wraps, RFC
// 2047 encoded words are shown decoded (the raw form on hover), and a
// right-to-left override is shown as a mark, never obeyed (issue 13, item 11).
test('the console wraps long subjects, decodes RFC 2047 words and shows bidi controls as marks', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const mx = { host: receiver.host, submissionPort: receiver.mxPort };
  const send = async (from: string, subject: string, id: string) => {
    const data = `From: ${from}\r\nTo: bob@receiver.test\r\nSubject: ${subject}\r\nMessage-ID: <${id}@client.example>\r\n\r\nHello.\r\n`;
    const reply = await submit(mx, { client: attacker.host, mailFrom: 'mallory@attacker.test', to: ['bob@receiver.test'], data });
    assert.equal(reply.code, 250, reply.text);
    return storedId(`<${id}@client.example>`);
  };
  const long = `Long${'x'.repeat(20_000)}`;
  const encodedSubject = '=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?='; // Grüße aus Köln
  const encodedFrom = '=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <mallory@attacker.test>';
  const ids = {
    long: await send('mallory@attacker.test', long, 'long-subject'),
    encoded: await send(encodedFrom, encodedSubject, 'encoded-words'),
    bidi: await send('mallory@attacker.test', 'Invoice \u202Efdp.exe', 'bidi-override'),
  };

  const page = await browser.newPage();
  // What a reader sees: no page wider than the window, no raw bidi control
  // anywhere in the page's text or attributes.
  const look = async (hash: string, ready: string) => {
    await page.goto(`${consoleUrl()}${hash}`);
    await page.locator('main', { hasText: ready }).waitFor();
    const seen = await page.evaluate(() => ({
      width: document.documentElement.scrollWidth,
      // a table in its scroll box, a pre: wider inside than shown
      sideways: [...document.querySelectorAll('main *')].filter((e) => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible').map((e) => `${e.tagName}.${e.className}: ${e.scrollWidth} px`),
      viewport: window.innerWidth,
      text: document.body.textContent ?? '',
      attributes: [...document.querySelectorAll('*')].flatMap((e) => [...e.attributes].map((a) => a.value)).join('\n'),
    }));
    assert.ok(seen.width <= seen.viewport, `${hash}: the page is ${seen.width} px wide in a ${seen.viewport} px window`);
    assert.deepEqual(seen.sideways, [], `${hash}: text scrolls sideways`);
    assert.ok(!/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(seen.text + seen.attributes), `${hash}: a raw bidi control in the page`);
    return page.locator('main').innerText();
  };

  const sessions = await look('#/sessions', 'Grüße aus Köln');
  assert.match(sessions, /Invoice ⟨U\+202E⟩fdp\.exe/);
  assert.ok(!sessions.includes(encodedSubject), 'the encoded subject is shown decoded');
  const inbox = await look(`#/mailbox/bob%40receiver.test/INBOX`, 'Jürgen Müller');
  assert.match(inbox, /Jürgen Müller <mallory@attacker\.test>\s+Grüße aus Köln/);
  assert.match(inbox, /Invoice ⟨U\+202E⟩fdp\.exe/);
  assert.equal(await page.getByText('Grüße aus Köln').first().getAttribute('title'), `As sent: ${encodedSubject}`, 'the raw form on hover');

  await look(`#/message/${encodeURIComponent(ids.long)}`, 'The SMTP conversation');
  assert.equal((await page.locator('main h2').first().innerText()).replace(/\s/g, ''), long);
  await look(`#/message/${encodeURIComponent(ids.long)}/headers`, 'In order, top first');

  const encoded = await look(`#/message/${encodeURIComponent(ids.encoded)}`, 'The SMTP conversation');
  assert.equal(await page.locator('main h2').first().innerText(), 'Grüße aus Köln');
  assert.match(encoded, /From\s+Jürgen Müller <mallory@attacker\.test>/);
  assert.match(encoded, /“Grüße aus Köln”/, 'the transcript names the message by its decoded subject');
  const headers = await look(`#/message/${encodeURIComponent(ids.encoded)}/headers`, 'In order, top first');
  assert.ok(headers.includes(encodedSubject), 'the Headers tab keeps the raw form');

  const bidi = await look(`#/message/${encodeURIComponent(ids.bidi)}`, 'The SMTP conversation');
  assert.equal(await page.locator('main h2').first().innerText(), 'Invoice ⟨U+202E⟩fdp.exe');
  assert.match(bidi, /“Invoice ⟨U\+202E⟩fdp\.exe”/);
  // A text only the source tab shows: the message view before it names the subject too.
  const source = await look(`#/message/${encodeURIComponent(ids.bidi)}/source`, 'Subject: Invoice');
  assert.match(source, /Subject: Invoice ⟨U\+202E⟩fdp\.exe/);
  assert.match(source, /Hello\.\s*$/, 'the source ends with the message');
  await shoot(page, 'console-mail-text');
});
