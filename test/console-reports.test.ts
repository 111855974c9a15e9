// The console's Reports view (issue 16), in a real browser (Debian's
// chromium, headless), against a lab with the receiver, the sender and the
// attacker: alice's mail goes out through the sender (SPF and DKIM pass),
// mallory spoofs sender.test and monitor.test through the attacker, the
// receiver sends its aggregate reports twice, and then an attacker's forged
// report with markup in it arrives while the view is open. The view lists each report with its
// reporter, period and policy, a row per source with the right counts, the
// sender's MTA as the domain's own and the attacker's as failing, and a
// chart per domain (an SVG with a title, and a table of the same numbers).
// With UPDATE_SCREENSHOTS=1 it writes docs/images/reports.png.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { beyondLoopback, openBrowser } from './support/browser.ts';
import { inOneReportPeriod, startLab, type LabMta, type TestLab } from './support/lab.ts';
import { ATTACKER_HOST, deliver, message, recorded, SENDER_HOST, submit, waitFor } from './support/mail.ts';

const images = process.env.UPDATE_SCREENSHOTS === '1' ? new URL('../docs/images/', import.meta.url).pathname : undefined;

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
after(() => lab?.close());

const consoleOf = (mta: LabMta) => `http://${mta.host}:${mta.apiPort}/`;
let sent = 0;

// Through an instance's submission port; resolves when the receiver has decided.
async function mail(via: LabMta, user: string, from: string) {
  const id = `r${++sent}-${Date.now()}`;
  const reply = await submit(via, { user, mailFrom: from, to: ['bob@receiver.test'], data: message(from, 'bob@receiver.test', id) });
  assert.equal(reply.code, 250, reply.text);
  await waitFor(`${id} at the receiver`, () => recorded(receiver, `<${id}@client.example>`).catch(() => undefined), 20_000);
}

async function sendReports() {
  const response = await fetch(`${consoleOf(receiver)}api/reports/send`, { method: 'POST' });
  assert.equal(response.status, 200);
  const { reports } = (await response.json()) as { reports: { policyDomain: string }[] };
  await waitFor('the reports in the mailbox', async () => {
    const listed = (await (await fetch(`${consoleOf(receiver)}api/reports`)).json()) as { reportId?: string }[];
    return listed.length >= reports.length + shown ? (shown = listed.length) : undefined;
  });
}
let shown = 0;

// A report as an attacker forges one: valid RFC 9990, with markup where a name goes.
function forged(): string {
  const xml = `<?xml version="1.0"?><feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0"><report_metadata><org_name>&lt;img src=x onerror=window.pwned=1&gt;</org_name><email>x@attacker.test</email><report_id>forged1</report_id><date_range><begin>1700000000</begin><end>1700000300</end></date_range></report_metadata><policy_published><domain>attacker.test</domain><p>none</p></policy_published><record><row><source_ip>192.0.2.66</source_ip><count>7</count><policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>&lt;b&gt;attacker.test</header_from></identifiers><auth_results><spf><domain>attacker.test</domain><result>pass</result></spf></auth_results></record></feedback>`;
  return [
    'From: reports@attacker.test',
    'To: bob@receiver.test',
    'Subject: Report Domain: attacker.test Submitter: attacker.test Report-ID: forged1',
    'Message-ID: <forged1@attacker.test>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b"',
    '',
    '--b',
    'Content-Type: application/gzip; name="attacker.test!attacker.test!1700000000!1700000300!forged1.xml.gz"',
    'Content-Transfer-Encoding: base64',
    '',
    gzipSync(xml).toString('base64').replace(/.{76}/g, '$&\r\n'),
    '--b--',
    '',
  ].join('\r\n');
}

test("the Reports view: each report's reporter, period, policy and sources with their counts, the attacker failing, a chart per domain", { timeout: 180_000 }, async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const requested: string[] = [];
  browser.on('request', (request) => requested.push(request.url()));
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(consoleOf(receiver));
  await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
  assert.equal(await page.getByRole('link', { name: /^Reports/ }).count(), 0, 'no Reports link before any report');

  // Two reports of one period, for the counts below: the first part of it, then the rest.
  await inOneReportPeriod(receiver, 60_000);
  // The first part: 3 of alice's, 2 spoofs of sender.test (rejected), 1 of monitor.test (p=none).
  for (let i = 0; i < 3; i++) await mail(sender, 'alice@sender.test', 'alice@sender.test');
  for (let i = 0; i < 2; i++) await mail(attacker, 'mallory@attacker.test', 'ceo@sender.test');
  await mail(attacker, 'mallory@attacker.test', 'ceo@monitor.test');
  assert.equal((await deliver(receiver, SENDER_HOST, 'news@monitor.test', message('news@monitor.test', 'bob@receiver.test', `monitor-own-${Date.now()}`))).code, 250);
  await sendReports();
  // The rest: 1 of alice's, 3 spoofs.
  await mail(sender, 'alice@sender.test', 'alice@sender.test');
  for (let i = 0; i < 3; i++) await mail(attacker, 'mallory@attacker.test', 'ceo@sender.test');
  await sendReports();

  // The link appears without a reload, with the count.
  const link = page.getByRole('link', { name: /^Reports/ });
  await link.waitFor({ timeout: 15_000 });
  await page.locator('#reports-count').getByText('3', { exact: true }).waitFor({ timeout: 15_000 }); // sender.test twice, monitor.test
  await link.click();
  await page.getByRole('heading', { name: 'DMARC reports' }).waitFor();
  const senderReports = page.getByRole('region', { name: 'Reports for sender.test' });
  await senderReports.waitFor();
  const articles = senderReports.locator('article.report');
  assert.equal(await articles.count(), 2);

  // Per report: reporter, period, policy; newest first.
  const [newest, oldest] = [articles.nth(0), articles.nth(1)];
  assert.match(await newest.locator('h4').innerText(), /^From mx\.receiver\.test <postmaster@receiver\.test>$/);
  assert.match(await newest.locator('dl.meta').innerText(), /Period\s+\S.* to \S.*\s+Policy published\s+p=reject;.*adkim=r; aspf=r/);
  const rowsOf = async (article: typeof newest) =>
    (await article.locator('table.sources tbody tr').allInnerTexts()).map((text) => text.replace(/\s+/g, ' ').trim()).sort();
  const first = await rowsOf(oldest);
  assert.equal(first.length, 2);
  assert.match(first[0], /^mta\.attacker\.test 192\.0\.2\.66 ✗ not the domain’s 2 ✗ fail SPF fail for sender\.test ✗ fail no signature ✗ DMARC fail ! reject$/);
  assert.match(first[1], /^mta\.sender\.test 192\.0\.2\.10 ✓ the domain's own 3 ✓ aligned pass SPF pass for sender\.test ✓ aligned pass pass d=sender\.test s=rsa2048 pass d=sender\.test s=ed25519 ✓ DMARC pass – none$/);
  const second = await rowsOf(newest);
  assert.match(second.find((r) => r.startsWith('mta.attacker.test'))!, / 3 ✗ fail /);
  assert.match(second.find((r) => r.startsWith('mta.sender.test'))!, / 1 ✓ aligned pass /);
  // The attacker, in words.
  assert.match(await oldest.locator('.report-summary').innerText(), /^mta\.sender\.test \(192\.0\.2\.10\) sent 3 messages that passed DMARC: sender\.test's own mail\. mta\.attacker\.test \(192\.0\.2\.66\) sent 2 messages in sender\.test's name that failed DMARC: not sender\.test's servers, an attacker/);
  assert.equal(await oldest.locator('tr.stranger').count(), 1);

  // The chart: a bar a report, with a title and the numbers as a table.
  const chart = senderReports.getByRole('img', { name: "Messages in sender.test's name that passed and failed DMARC, per report" });
  await chart.waitFor();
  assert.equal(await chart.locator('g.bar').count(), 2);
  assert.match(await chart.locator('desc').textContent() ?? '', /^2 reports: 4 messages passed DMARC and 5 failed\.$/);
  const heights = await chart.locator('rect.fail').evaluateAll((rects) => rects.map((r) => Number(r.getAttribute('height'))));
  assert.ok(heights[1] > heights[0], `3 failed after 2: ${heights}`);
  await senderReports.getByText('The chart as a table').click();
  assert.deepEqual((await senderReports.locator('table.chart-table tbody tr').allInnerTexts()).map((r) => r.split('\t').slice(1).join(' ')), ['3 2', '1 3']);

  // monitor.test: p=none, the spoof delivered and failing.
  const monitor = page.getByRole('region', { name: 'Reports for monitor.test' });
  assert.match((await monitor.locator('table.sources tbody tr').allInnerTexts()).join('\n'), /mta\.attacker\.test[\s\S]*DMARC fail\s+– none/);

  if (images) {
    mkdirSync(images, { recursive: true });
    await page.setViewportSize({ width: 1280, height: 1000 });
    await senderReports.getByText('The chart as a table').click(); // closed again
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${images}reports.png` });
  }

  // A forged report arrives while the view is open: it shows, its markup as text.
  await page.evaluate(() => Object.assign(window, { loadedOnce: true }));
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'reports@attacker.test', forged())).code, 250);
  const forgedOne = page.getByRole('region', { name: 'Reports for attacker.test' });
  await forgedOne.getByText('<img src=x onerror=window.pwned=1>').waitFor();
  assert.equal(await page.locator('main img, main b').count(), 0);
  assert.equal(await page.evaluate(() => (window as { pwned?: number }).pwned), undefined);

  assert.equal(await page.evaluate(() => (window as { loadedOnce?: boolean }).loadedOnce), true, 'shown without a reload');
  await page.locator('#reports-count').getByText('4', { exact: true }).waitFor();

  // One that cannot be read: listed apart, with why.
  const broken = forged().replace(/(base64\r\n\r\n)[\s\S]*?(\r\n--b--)/, '$1bm90IGd6aXA=$2').replace(/forged1/g, 'broken1');
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'reports@attacker.test', broken)).code, 250);
  const unread = page.getByRole('region', { name: 'Reports that could not be read' });
  await unread.getByRole('alert').getByText(/^⚠ could not be read: the attachment is not valid gzip/).waitFor({ timeout: 15_000 });
  assert.match(await unread.locator('h4').innerText(), /Report-ID: broken1$/);
  assert.deepEqual(errors, []);
  for (const url of requested) assert.match(url, /^http:\/\/127\.\d+\.\d+\.\d+:\d+\//, `${url} is on loopback`);
  for (const attempt of beyondLoopback(browser)) assert.match(attempt, /^(CONNECT [a-z0-9-]+\.(googleapis|google)\.com:443|POST http:\/\/update\.googleapis\.com\/\S*)$/, `only chromium's own requests went to the gate: ${attempt}`);
});
