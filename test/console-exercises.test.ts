// The console's exercise views (issue 15), in a real browser (Debian's
// chromium, headless), against a lab with a class whose receiver checks the
// exercises by sending real mail: a student checks her SPF exercise while
// her record leaves out the lab's sender, sees it fail with the reason and
// what the check read in DNS, reveals a hint, fixes her zone in My zone,
// checks again, sees the pass and opens the why view of the message the
// check sent; the teacher's grid, open all along, shows her cell fail and
// then pass without a reload (the `exercise` event), and opens it to the
// same result, where a check runs for her. A student who opens the grid is
// refused on the page; the sender's console has no exercises.
// With UPDATE_SCREENSHOTS=1 it writes docs/images/exercises-student.png and
// docs/images/exercises-grid.png (docs/teaching.md shows them).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import type { BrowserContext, Page } from 'playwright-core';
import { loadClass } from '../services/lib/classroom.ts';
import { beyondLoopback, openBrowser } from './support/browser.ts';
import { makeClass, type TestClass } from './support/dns-class.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';

const images = process.env.UPDATE_SCREENSHOTS === '1' ? new URL('../docs/images/', import.meta.url).pathname : undefined;

let lab: TestLab;
let receiver: LabMta;
let sender: LabMta;
let theClass: TestClass;
const credential = (login: string) => theClass.credentials.get(login)!;

before(async () => {
  theClass = makeClass('name: Mail security, group C\nstudents: [ana, ben]\n');
  lab = await startLab(undefined, { classroom: loadClass(theClass.dir) });
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
  await lab.start('attacker'); // the spoof that SPF must fail
});
after(async () => {
  await lab?.close();
  rmSync(theClass.dir, { recursive: true, force: true });
});

const consoleOf = (mta: LabMta) => `http://${mta.host}:${mta.apiPort}/`;

async function shoot(page: Page, name: string, fullPage = false) {
  if (!images) return;
  mkdirSync(images, { recursive: true });
  await page.evaluate(() => document.getAnimations().forEach((a) => a.finish())); // a changed cell's ring, faded
  await page.screenshot({ path: `${images}${name}.png`, fullPage });
}

async function logIn(page: Page, mta: LabMta, login: string) {
  await page.goto(consoleOf(mta));
  await page.getByLabel('Your credential').fill(credential(login));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('Logged in as').waitFor();
}

// Her zone through the API, as the CLI changes it.
async function zoneRecords(login: string, add: string[]) {
  const response = await fetch(`${consoleOf(receiver)}api/zone/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${credential(login)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ add }),
  });
  assert.equal(response.status, 200, await response.text());
}

// Every address the pages asked for is on loopback; what chromium tried
// beyond it is its own business with Google, refused.
function checkRequests(browser: BrowserContext, requested: string[]) {
  for (const url of requested) assert.match(url, /^http:\/\/127\.\d+\.\d+\.\d+:\d+\//, `${url} is on loopback`);
  for (const attempt of beyondLoopback(browser)) assert.match(attempt, /^(CONNECT [a-z0-9-]+\.(googleapis|google)\.com:443|POST http:\/\/update\.googleapis\.com\/\S*)$/, `only chromium's own requests went to the gate: ${attempt}`);
}

test("a student's SPF exercise fails with its reason, a hint, the fix, the pass and the message's why view; the teacher's grid follows live", async (t) => {
  // Two browsers, two logins: the student's and the teacher's, side by side.
  const browser = await openBrowser(t);
  const teachers = browser && (await openBrowser(t));
  if (!browser || !teachers) return;
  const requested: string[] = [];
  for (const b of [browser, teachers]) b.on('request', (request) => requested.push(request.url()));

  // Her mail reaches the receiver (exercise 2's records), and her SPF makes
  // the typical mistake: it names her MX, the receiver, not the sender. One
  // more TXT record at her domain says what a student might put there.
  await zoneRecords('ana', ['@ 300 MX 10 mx.ana.test.', 'mx 300 A 192.0.2.20', '@ 300 TXT "v=spf1 mx -all"', '@ 300 TXT "<img src=x onerror=window.pwned=1>"']);

  // The teacher's grid, open from the start.
  const teacher = await teachers.newPage();
  await logIn(teacher, receiver, 'teacher');
  await teacher.getByRole('link', { name: 'Exercises' }).click();
  const grid = teacher.locator('table.grid');
  await grid.waitFor();
  await teacher.getByRole('status').filter({ hasText: 'Live' }).waitFor();
  await teacher.evaluate(() => Object.assign(window, { loadedOnce: true })); // gone if the page reloads
  const anaSpf = grid.locator('a.cell[href="#/exercises/spf/ana"]');
  assert.match(await anaSpf.getAttribute('aria-label') ?? '', /^ana, exercise 3 .*: not checked$/);
  assert.equal(await grid.locator('tbody tr').count(), 2, 'a row a student');
  // Every state her cell shows, as it changes.
  await teacher.evaluate(() => {
    const states: string[] = [];
    const look = () => states.push(document.querySelector('a.cell[href="#/exercises/spf/ana"]')?.getAttribute('aria-label') ?? '');
    new MutationObserver(look).observe(document.querySelector('table.grid')!, { subtree: true, childList: true });
    Object.assign(window, { states });
  });

  // Ana: her exercises, then the SPF one.
  const page = await browser.newPage();
  await logIn(page, receiver, 'ana');
  await page.getByRole('link', { name: 'Exercises' }).click();
  const rows = page.locator('table.exercises tbody tr');
  await rows.first().waitFor();
  assert.ok((await rows.count()) >= 10, 'the whole course');
  assert.match(await rows.nth(2).innerText(), /^3\s+.+\s+\d+ min\s+– not checked$/);
  await rows.nth(2).getByRole('link').click();
  await page.getByRole('heading', { name: /^Exercise 3: .* · ana$/ }).waitFor();
  assert.match(await page.locator('.goal').innerText(), /ana\.test/, 'the goal names her domain');

  // The check: it runs, then fails, naming the sender she left out.
  await page.getByRole('button', { name: 'Check', exact: true }).click();
  await page.getByRole('status').getByText(/Checking…/).waitFor();
  const latest = page.locator('.result').first();
  await latest.waitFor({ timeout: 30_000 });
  assert.match(await latest.locator('.result-head').innerText(), /^✗ failed Checked at \d\d:\d\d:\d\d by ana, in \d+\.\d s$/);
  const failing = latest.locator('li.check.is-fail').first();
  assert.match(await failing.locator('.reason').innerText(), /v=spf1 mx -all.*192\.0\.2\.10/);
  // What it read in DNS, her hostile record among it, as text.
  const seen = latest.locator('table.seen').first();
  await seen.getByText('v=spf1 mx -all').first().waitFor();
  await seen.getByText('<img src=x onerror=window.pwned=1>').first().waitFor();
  assert.equal(await page.locator('main img').count(), 0, 'her record is shown as text, never as markup');
  assert.equal(await page.evaluate(() => (window as { pwned?: number }).pwned), undefined);
  assert.match(await page.locator('.exercise-meta').innerText(), /✗ failed at \d\d:\d\d/);

  // The grid, without a reload, shows it failed.
  await teacher.locator('a.cell.bad[href="#/exercises/spf/ana"]').waitFor();
  assert.match(await anaSpf.getAttribute('aria-label') ?? '', /^ana, exercise 3 .*: failed; checked at \d\d:\d\d$/);
  const states = [...new Set(await teacher.evaluate(() => (window as unknown as { states: string[] }).states))].map((l) => l.replace(/^ana, exercise 3 [^:]*: /, ''));
  assert.deepEqual(states.map((l) => l.replace(/\d\d:\d\d/, 'HH:MM')), ['checking', 'failed; checked at HH:MM'], 'running while it ran');

  // A hint, then the next.
  const hintButton = page.getByRole('button', { name: /^Show a hint \(1 of \d+\)$/ });
  await hintButton.click();
  await page.locator('ol.hints li').first().waitFor();
  assert.equal(await page.locator('ol.hints li').count(), 1);
  await page.getByRole('button', { name: /^Show a hint \(2 of \d+\)$/ }).waitFor();
  await shoot(page, 'exercises-student', true);

  // The fix, in My zone: the sender's address in place of mx.
  await page.getByRole('link', { name: 'My zone' }).click();
  const editor = page.getByLabel('Records');
  await editor.waitFor();
  await editor.fill((await editor.inputValue()).replace('v=spf1 mx -all', 'v=spf1 ip4:192.0.2.10 -all'));
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').getByText(/^✓ Saved: serial \d+, served now\.$/).waitFor();

  // Checked again: it passes, and stays shown as passed.
  await page.goBack();
  await page.getByRole('heading', { name: /^Exercise 3: .* · ana$/ }).waitFor();
  await page.getByRole('button', { name: 'Check', exact: true }).click();
  await latest.locator('.result-head').getByText('✓ passed').waitFor({ timeout: 30_000 });
  assert.equal(await latest.locator('li.check.is-fail').count(), 0);
  assert.match(await page.locator('.exercise-meta').innerText(), /✓ passed passed at \d\d:\d\d/);
  await teacher.locator('a.cell.good[href="#/exercises/spf/ana"]').waitFor();
  assert.match(await anaSpf.getAttribute('aria-label') ?? '', /^ana, exercise 3 .*: passed; passed at \d\d:\d\d/);
  assert.equal(await teacher.evaluate(() => (window as { loadedOnce?: boolean }).loadedOnce), true, 'the grid changed without a reload');
  // A check the teacher runs for ben (as `npm run exercise` does), whose zone is empty: his cell fails, live too.
  const forBen = await fetch(`${consoleOf(receiver)}api/exercises/mx/check?student=ben`, { method: 'POST', headers: { authorization: `Bearer ${credential('teacher')}` } });
  assert.equal(forBen.status, 200, await forBen.text());
  await teacher.locator('a.cell.bad[href="#/exercises/mx/ben"]').waitFor();
  assert.match(await teacher.locator('table.grid tfoot').innerText(), /^Passed\s+0\/2\s+0\/2\s+1\/2\s+0\/2/);
  await shoot(teacher, 'exercises-grid');

  // The message the check sent, and its why view.
  const own = latest.locator('.probe').filter({ hasText: 'mta.sender.test (192.0.2.10)' }).first();
  const why = own.getByRole('link', { name: /^Why: the message in ana@ana\.test \/ INBOX$/ });
  await why.click();
  // The message view's own "Why" link; until it shows, the exercise page's "Why: the message in ..." links would match a name that is not exact.
  await page.getByRole('link', { name: 'Why', exact: true }).waitFor();
  assert.match(await page.locator('.verdict').innerText(), /✓ SPF pass/);
  await page.getByText('The SMTP conversation').waitFor();
  await page.goBack();
  await page.getByRole('heading', { name: /^Exercise 3: .* · ana$/ }).waitFor();
  await page.evaluate(() => Object.assign(window, { loadedOnce: true }));

  // The teacher opens her cell from the keyboard: the same result, and a check run for her.
  await anaSpf.focus();
  await teacher.keyboard.press('Enter');
  await teacher.getByRole('heading', { name: /^Exercise 3: .* · ana$/ }).waitFor();
  const hers = teacher.locator('.result').first();
  assert.match(await hers.locator('.result-head').innerText(), /^✓ passed Checked at .* by ana,/);
  await teacher.getByText(/^ana has revealed 1 of \d+\.$/).waitFor();
  await teacher.getByRole('button', { name: 'Check now for ana' }).click();
  await hers.locator('.result-head').getByText(/by teacher/).waitFor({ timeout: 30_000 });
  // ... which ana's page, open on the exercise, shows too, without a reload.
  await latest.locator('.result-head').getByText(/^✓ passed Checked at .* by teacher,/).waitFor();
  assert.equal(await page.evaluate(() => (window as { loadedOnce?: boolean }).loadedOnce), true);
  // A column's number opens the exercise as every student reads it, every hint shown.
  await teacher.getByRole('link', { name: '← The class' }).click();
  await grid.getByRole('link', { name: /^Exercise 3: / }).click();
  await teacher.getByRole('heading', { name: /^Exercise 3: [^·]*$/ }).waitFor();
  assert.match(await teacher.locator('.goal').innerText(), /<domain>/);
  assert.ok((await teacher.locator('ol.hints li').count()) >= 2);
  checkRequests(browser, requested);
  checkRequests(teachers, []);
});

test('a student who opens the grid is told it is the teacher’s, and the console goes on; the sender’s console has no exercises', async (t) => {
  const browser = await openBrowser(t);
  if (!browser) return;
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await logIn(page, receiver, 'ben');
  await page.goto(`${consoleOf(receiver)}#/exercises/grid`);
  await page.getByRole('alert').getByText(/^⚠ .*grid.* is the teacher's; you are ben \(ben\.test\)$/).waitFor();
  await page.getByRole('link', { name: 'Your exercises' }).click();
  await page.locator('table.exercises tbody tr').first().waitFor();
  assert.deepEqual(errors, []);

  await logIn(page, sender, 'ben');
  await page.getByRole('link', { name: 'DKIM keys' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'Exercises' }).count(), 0);
});
