// The web console in classroom mode, in a real browser (Debian's chromium,
// headless), against a lab whose MTAs and DNS have a class of two students
// and a teacher: the login screen, the cookie no script reads, no credential
// in any address; a student's zone edited in the console and served (dig
// sees it), its history with diffs, a refused line shown at its line; a DKIM
// key made at the sender's console and published with its button; another
// student refused her mail and her zone; the teacher's class view; log out.
// With SCREENSHOTS=1 it also writes docs/screenshots/classroom-*.png.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import type { BrowserContext, Page } from 'playwright-core';
import { loadClass } from '../services/lib/classroom.ts';
import { beyondLoopback, openBrowser } from './support/browser.ts';
import { makeClass, type TestClass } from './support/dns-class.ts';
import { dig } from './support/dig.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { submit, waitFor } from './support/mail.ts';

const screenshots = process.env.SCREENSHOTS === '1' ? new URL('../docs/screenshots/', import.meta.url).pathname : undefined;

let lab: TestLab;
let receiver: LabMta;
let sender: LabMta;
let theClass: TestClass;
const credential = (login: string) => theClass.credentials.get(login)!;
let wrongCredentials = 0; // sent from this address so far: the eleventh within 5 minutes gets 429

before(async () => {
  theClass = makeClass('name: Mail security, group B\nstudents: [ana, ben]\n');
  lab = await startLab(undefined, { classroom: loadClass(theClass.dir) });
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
});
after(async () => {
  await lab.close();
  rmSync(theClass.dir, { recursive: true, force: true });
});

const consoleOf = (mta: LabMta) => `http://${mta.host}:${mta.apiPort}/`;
const DNS = '127.0.2.53';

async function shoot(page: Page, name: string, fullPage = false) {
  if (!screenshots) return;
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: `${screenshots}classroom-${name}.png`, fullPage });
}

// A page that remembers every address it asked for.
async function watchedPage(browser: BrowserContext): Promise<{ page: Page; requested: string[] }> {
  const page = await browser.newPage();
  const requested: string[] = [];
  page.on('request', (request) => requested.push(request.url()));
  return { page, requested };
}

async function logIn(page: Page, mta: LabMta, login: string) {
  await page.goto(consoleOf(mta));
  await page.getByLabel('Your credential').fill(credential(login));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('Logged in as').waitFor();
}

// The end of each browser test: every address the console's pages asked for
// is on loopback and holds no credential. What went to the gate (refused) is
// chromium's own business with Google (updates, sign-in, autofill), never
// the console's, and holds no credential either.
function checkRequests(browser: BrowserContext, requested: string[]) {
  assert.ok(requested.length > 0);
  const credentials = ['ana', 'ben', 'teacher'].map(credential);
  for (const url of requested) {
    assert.match(url, /^http:\/\/127\.\d+\.\d+\.\d+:\d+\//, `${url} is on loopback`);
    for (const secret of credentials) assert.ok(!url.includes(secret), `no credential in ${url}`);
  }
  for (const attempt of beyondLoopback(browser)) {
    assert.match(attempt, /^(CONNECT [a-z0-9-]+\.(googleapis|google)\.com:443|POST http:\/\/update\.googleapis\.com\/\S*)$/, `only chromium's own requests went to the gate: ${attempt}`);
    for (const secret of credentials) assert.ok(!attempt.includes(secret), `no credential in ${attempt}`);
  }
}

const zoneSerial = async (domain: string) => Number((await dig(lab.dnsPort, [domain, 'SOA'], DNS)).answer[0]?.split(' ')[6]);

test('the login screen: a wrong credential is refused with a message, the right one logs in; the cookie is HttpOnly and no credential is in any address', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const { page, requested } = await watchedPage(browser);
  await page.goto(consoleOf(receiver));
  const field = page.getByLabel('Your credential');
  await field.waitFor();
  assert.equal(await page.locator('.layout').isVisible(), false, 'nothing of the console before a login');
  await shoot(page, 'login');

  await field.fill('ana-wrongwrongwrongwrong');
  await page.getByRole('button', { name: 'Log in' }).click();
  wrongCredentials++;
  const alert = page.getByRole('alert');
  await alert.getByText(/^⚠ Wrong credential: that credential is no one's in this class\.$/).waitFor();

  await field.fill(credential('ana'));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('Logged in as').waitFor();
  assert.match(await page.locator('#who').innerText(), /^Logged in as ana \(ana\.test\) · Mail security, group B\s*Log out$/);
  await page.getByRole('link', { name: 'My zone' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'DKIM keys' }).count(), 0, 'keys are made at the sender, not here');
  // Her mailboxes at the receiver, before any mail.
  await page.locator('#mailboxes').getByText('ana@ana.test').waitFor();
  assert.deepEqual(await page.locator('#mailboxes .mailbox').allInnerTexts(), ['ana@ana.test', 'postmaster@ana.test']);

  const cookies = await browser.cookies(consoleOf(receiver));
  const session = cookies.find((c) => c.name === 'lab_session_receiver');
  assert.ok(session, 'the login cookie is set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie), '', 'no script of the page can read it');
  assert.ok(requested.some((url) => url.endsWith('/api/login')));
  checkRequests(browser, requested);
});

test('a student edits her zone in the console: dig sees it, the history shows the diff; a refused line is shown at its line and nothing changes; a change made meanwhile is not overwritten', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const { page, requested } = await watchedPage(browser);
  await logIn(page, receiver, 'ana');
  await page.getByRole('link', { name: 'My zone' }).click();
  await page.getByRole('heading', { name: /^Zone ana\.test · ana's · serial 1$/ }).waitFor();
  const editor = page.getByLabel('Records');
  assert.equal(await editor.inputValue(), '');
  assert.match(await page.locator('pre.zone-served').innerText(), /@ 5 SOA ns\.lab\.test\. hostmaster\.lab\.test\. 1 /);
  await page.getByText('No change yet').waitFor();

  await editor.fill(['@ 300 MX 10 mx.receiver.test.', '@ 300 TXT "v=spf1 ip4:192.0.2.10 -all"', '_dmarc 300 TXT "v=DMARC1; p=reject; rua=mailto:ana@ana.test"'].join('\n'));
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').getByText('✓ Saved: serial 2, served now.').waitFor();
  assert.deepEqual((await dig(lab.dnsPort, ['ana.test', 'MX'], DNS)).answer, ['ana.test. 300 IN MX 10 mx.receiver.test.']);
  assert.deepEqual((await dig(lab.dnsPort, ['_dmarc.ana.test', 'TXT'], DNS)).answer, ['_dmarc.ana.test. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:ana@ana.test"']);
  assert.equal(await zoneSerial('ana.test'), 2);
  // The history: the change, its lines added, as text.
  const change = page.locator('ul.history > li').first();
  assert.match(await change.locator('.change-head').innerText(), /^Serial 2 · \d\d:\d\d:\d\d · by ana$/);
  assert.deepEqual((await change.locator('ins').allInnerTexts()).map((l) => l.trim()), ['+@ 300 MX 10 mx.receiver.test.', '+@ 300 TXT "v=spf1 ip4:192.0.2.10 -all"', '+_dmarc 300 TXT "v=DMARC1; p=reject; rua=mailto:ana@ana.test"']);
  assert.equal(await change.locator('del').count(), 0);
  assert.match(await page.locator('pre.zone-served').innerText(), /hostmaster\.lab\.test\. 2 [\s\S]*_dmarc 300 TXT/);

  // A line the DNS refuses: shown at its line, selected in the editor; nothing changes.
  const text = await editor.inputValue();
  await editor.fill(`${text}www 300 A 192.0.2.300\n`);
  await page.getByRole('button', { name: 'Save' }).click();
  const refusal = page.locator('#records-problem [role=alert]');
  await refusal.getByText('✗ Not saved: the DNS refused line 4. Nothing in the zone changed.').waitFor();
  const bad = refusal.locator('li.bad');
  assert.equal(await bad.getAttribute('value'), '4');
  assert.equal(await bad.locator('code').innerText(), 'www 300 A 192.0.2.300');
  assert.match(await bad.locator('.reason').innerText(), /^✗ line 4: .*192\.0\.2\.300/);
  assert.equal(await editor.getAttribute('aria-invalid'), 'true');
  assert.equal(await editor.evaluate((e: HTMLTextAreaElement) => e.value.slice(e.selectionStart, e.selectionEnd)), 'www 300 A 192.0.2.300');
  await shoot(page, 'zone-refused', true);
  assert.equal(await zoneSerial('ana.test'), 2, 'the zone did not change');
  assert.equal((await dig(lab.dnsPort, ['www.ana.test', 'A'], DNS)).status, 'NXDOMAIN');
  assert.equal(await page.locator('ul.history > li').count(), 1);

  // Someone changes the zone meanwhile (here the CLI's way, with her credential):
  // the save is refused, the editor shows the zone as it is now, her text stays at hand.
  const meanwhile = await fetch(`${consoleOf(receiver)}api/zone/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${credential('ana')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ add: ['mail 300 A 192.0.2.20'] }),
  });
  assert.equal(meanwhile.status, 200, await meanwhile.text());
  await editor.fill(`${text}www 300 A 192.0.2.80\n`);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('⚠ Not saved: someone changed ana.test meanwhile. The editor now shows it as it is, at serial 3.').waitFor();
  assert.match(await editor.inputValue(), /^mail 300 A 192\.0\.2\.20$/m);
  assert.doesNotMatch(await editor.inputValue(), /www/);
  assert.match(await page.locator('details pre').innerText(), /^www 300 A 192\.0\.2\.80$/m);
  assert.equal((await dig(lab.dnsPort, ['www.ana.test', 'A'], DNS)).status, 'NXDOMAIN');
  // ... and saved again, on top of that change, with a line changed.
  await editor.fill(`${(await editor.inputValue()).replace('p=reject', 'p=quarantine')}www 300 A 192.0.2.80\n`);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').getByText('✓ Saved: serial 4, served now.').waitFor();
  assert.deepEqual((await dig(lab.dnsPort, ['www.ana.test', 'A'], DNS)).answer, ['www.ana.test. 300 IN A 192.0.2.80']);
  assert.deepEqual((await dig(lab.dnsPort, ['_dmarc.ana.test', 'TXT'], DNS)).answer, ['_dmarc.ana.test. 300 IN TXT "v=DMARC1; p=quarantine; rua=mailto:ana@ana.test"']);
  assert.deepEqual(await page.locator('ul.history > li .change-head strong').allInnerTexts(), ['Serial 4', 'Serial 3', 'Serial 2']);
  const last = page.locator('ul.history > li').first();
  assert.deepEqual((await last.locator('del').allInnerTexts()).map((l) => l.trim()), ['-_dmarc 300 TXT "v=DMARC1; p=reject; rua=mailto:ana@ana.test"']);
  assert.deepEqual((await last.locator('ins').allInnerTexts()).map((l) => l.trim()), ['+_dmarc 300 TXT "v=DMARC1; p=quarantine; rua=mailto:ana@ana.test"', '+www 300 A 192.0.2.80']);
  await shoot(page, 'zone', true);
  checkRequests(browser, requested);
});

test("she makes a DKIM key at the sender's console and publishes it with its button: dig sees the TXT, and her mail passes", async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const { page, requested } = await watchedPage(browser);
  await logIn(page, sender, 'ana');
  await page.getByRole('link', { name: 'DKIM keys' }).click();
  await page.getByText('No keys yet.').waitFor();
  await page.getByLabel('Selector').fill('s1');
  await page.getByLabel('Algorithm').selectOption('rsa-2048');
  await page.getByRole('button', { name: 'Generate key' }).click();
  const made = page.locator('.made');
  await made.getByRole('heading', { name: 'New key for s1 (rsa-2048)' }).waitFor();
  const line = await made.locator('pre.zone-line').innerText();
  assert.match(line, /^s1\._domainkey 300 TXT "v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]{300,}"$/);
  const row = page.locator('table.keys tbody tr', { hasText: 's1._domainkey.ana.test' });
  await row.getByText('– not published').waitFor();
  // Nothing is published before she chooses to.
  assert.equal((await dig(lab.dnsPort, ['s1._domainkey.ana.test', 'TXT'], DNS)).status, 'NXDOMAIN');
  await shoot(page, 'dkim', true);

  await made.getByRole('button', { name: 'Add it to my zone' }).click();
  await made.getByRole('status').getByText("✓ Published in ana.test's zone: serial 5.").waitFor();
  await row.getByText('✓ published').waitFor();
  const answer = await dig(lab.dnsPort, ['s1._domainkey.ana.test', 'TXT', '+short'], DNS);
  const record = answer.text.trim().split('\n').join('').replace(/" "/g, '').replace(/^"|"$/g, '');
  assert.equal(record, line.slice(line.indexOf('"') + 1, -1), 'the record served is the line shown');

  // With MX, SPF, DMARC and now the key in her zone, her mail passes at the receiver.
  const reply = await submit(sender, {
    user: 'ana@ana.test',
    password: credential('ana'),
    mailFrom: 'ana@ana.test',
    to: ['ana@ana.test'],
    data: `From: Ana <ana@ana.test>\r\nTo: ana@ana.test\r\nSubject: Signed by my own key\r\nMessage-ID: <signed-by-ana@ana.test>\r\nDate: ${new Date().toUTCString()}\r\n\r\nHello.\r\n`,
  });
  assert.equal(reply.code, 250, reply.text);
  await waitFor('her message at the receiver', async () => {
    const found = await fetch(`${consoleOf(receiver)}api/sessions?messageId=${encodeURIComponent('<signed-by-ana@ana.test>')}`, { headers: { authorization: `Bearer ${credential('ana')}` } });
    return ((await found.json()) as unknown[]).length ? true : undefined;
  }, 20_000);
  checkRequests(browser, requested);
});

test('another student sees none of her mail and cannot open her zone; the teacher sees the class and both zones', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const { page, requested } = await watchedPage(browser);

  // Ana sees her message, with its checks.
  await logIn(page, receiver, 'ana');
  await page.locator('#mailboxes').getByRole('link', { name: /^INBOX/ }).first().click();
  const mine = page.locator('tbody tr', { hasText: 'Signed by my own key' });
  await mine.waitFor();
  assert.match(await mine.innerText(), /✓ SPF pass\s+✓ DKIM pass\s+✓ DMARC pass/);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByText('You are logged out.').waitFor();

  // Ben: none of it.
  await page.getByLabel('Your credential').fill(credential('ben'));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('Logged in as').waitFor();
  assert.match(await page.locator('#who').innerText(), /^Logged in as ben \(ben\.test\)/);
  await page.locator('#mailboxes').getByText('ben@ben.test').waitFor();
  assert.deepEqual(await page.locator('#mailboxes .mailbox').allInnerTexts(), ['ben@ben.test', 'postmaster@ben.test']);
  await page.getByText('No sessions yet').waitFor();
  assert.doesNotMatch(await page.locator('main').innerText(), /Signed by my own key/);
  await page.goto(`${consoleOf(receiver)}#/mailbox/ana%40ana.test/INBOX`);
  await page.getByRole('alert').getByText("⚠ ana@ana.test is ana's mailbox; you are ben (ben.test)").waitFor();
  await page.goto(`${consoleOf(receiver)}#/zone/ana.test`);
  await page.getByRole('alert').getByText("⚠ ana.test is ana's zone; you are ben (ben.test)").waitFor();
  assert.equal(await page.getByLabel('Records').count(), 0);
  await shoot(page, 'refused');
  await page.getByRole('button', { name: 'Log out' }).click();

  // The teacher: the class, each zone's serial and last change, and both zones.
  await page.getByLabel('Your credential').fill(credential('teacher'));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('Logged in as').waitFor();
  assert.match(await page.locator('#who').innerText(), /^Logged in as teacher · Mail security, group B/);
  await page.getByRole('link', { name: 'Class' }).click();
  const anaRow = page.locator('table.class tbody tr', { hasText: 'ana.test' });
  const benRow = page.locator('table.class tbody tr', { hasText: 'ben.test' });
  await anaRow.getByText(/by ana$/).waitFor();
  await benRow.getByText('none yet: SOA and NS only').waitFor();
  assert.match(await anaRow.innerText(), /^ana\s+ana\.test\s+ana@ana\.test\s+5\s+\d\d:\d\d:\d\d by ana\s+Zone$/);
  assert.match(await benRow.innerText(), /^ben\s+ben\.test\s+ben@ben\.test\s+1\s+none yet/);
  await shoot(page, 'class');
  await anaRow.getByRole('link', { name: 'Zone' }).click();
  await page.getByRole('heading', { name: /^Zone ana\.test · ana's · serial 5$/ }).waitFor();
  assert.match(await page.getByLabel('Records').inputValue(), /^s1\._domainkey 300 TXT "v=DKIM1; k=rsa; p=/m);
  await page.getByLabel('Student').selectOption('ben.test');
  await page.getByRole('heading', { name: /^Zone ben\.test · ben's · serial 1$/ }).waitFor();
  // Her mail too.
  await page.locator('#mailboxes').getByText('ana@ana.test').waitFor();
  await page.goto(`${consoleOf(receiver)}#/mailbox/ana%40ana.test/INBOX`);
  await page.locator('tbody tr', { hasText: 'Signed by my own key' }).waitFor();
  checkRequests(browser, requested);
});

test('log out returns to the login screen and the old cookie no longer works; too many wrong credentials make it wait', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const { page, requested } = await watchedPage(browser);
  await logIn(page, receiver, 'ana');
  const cookie = (await browser.cookies(consoleOf(receiver))).find((c) => c.name === 'lab_session_receiver')!;
  const me = (value: string) => fetch(`${consoleOf(receiver)}api/me`, { headers: { cookie: `lab_session_receiver=${value}` } });
  assert.equal((await me(cookie.value)).status, 200);
  // A second tab of the same login, listening to the event stream.
  const other = await browser.newPage();
  other.on('request', (request) => requested.push(request.url()));
  await other.goto(consoleOf(receiver));
  await other.getByRole('status').filter({ hasText: 'Live' }).waitFor();

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Your credential').waitFor();
  await page.getByText('You are logged out.').waitFor();
  assert.equal(await page.locator('.layout').isVisible(), false);
  assert.equal(await page.locator('#who').innerText(), '');
  assert.equal((await me(cookie.value)).status, 401, 'the old cookie is no login any more');
  assert.equal((await browser.cookies(consoleOf(receiver))).find((c) => c.name === 'lab_session_receiver'), undefined, 'and the browser dropped it');
  // The other tab learns it from its event stream, which ends with the login.
  await other.getByText('Your login has ended').waitFor();
  assert.equal(await other.locator('.layout').isVisible(), false);
  assert.equal(await other.locator('#mailboxes').innerText(), '');
  await other.close(); // the first tab is in front again (a tab behind is drawn about once a second)
  // A reload still shows the login screen.
  await page.reload();
  await page.getByLabel('Your credential').waitFor();

  // Ten wrong credentials from this address within 5 minutes (the first
  // test's among them), then the console says how long to wait.
  const statuses: number[] = [];
  while (statuses.at(-1) !== 429 && statuses.length < 11) {
    await page.getByLabel('Your credential').fill(`ana-wrong${statuses.length}`);
    const answered = page.waitForResponse((r) => r.url().endsWith('/api/login'));
    await page.getByRole('button', { name: 'Log in' }).click();
    statuses.push((await answered).status());
  }
  assert.deepEqual(statuses, [...Array(10 - wrongCredentials).fill(401), 429]);
  await page.getByRole('alert').getByText(/^⚠ Too many attempts: wait \d+ s, then try again\.$/).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Log in' }).isDisabled(), true, 'the button waits too');
  checkRequests(browser, requested);
});
