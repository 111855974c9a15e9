// node scripts/measure-console.ts [SESSIONS]: how fast the web console's
// pages are with many stored sessions (default 10,000, the instances'
// sessionsKept). Fills a new data directory through the real SessionStore and
// Maildir (one session per message, like mail from the lab's MTAs: most in
// the INBOX, some in Junk, some rejected, some refused at RCPT), reopens it as
// a restarted MTA would, serves it with the real API on loopback, and times
// what the console fetches: its files, its first pages, a deep page, one
// message; and, when chromium and playwright-core are there, a real browser
// from navigation to the first row on screen. Prints milliseconds.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startApi } from '../services/mta/api/api.ts';
import { launchBrowser, whyNoBrowser } from './bench/browser.ts';
import { loadInstance } from '../services/mta/instance.ts';
import { pino } from 'pino';
import { Maildir, type Folder } from '../services/mta/store/maildir.ts';
import { Queue } from '../services/mta/outbound/queue.ts';
import { SessionStore, type SessionRecord, type Transaction } from '../services/mta/store/sessions.ts';
import { WriteAheadLog } from '../services/mta/store/write-ahead-log.ts';

const root = resolve(import.meta.dirname, '..');
const count = Number(process.argv[2] ?? 10_000);
const RUNS = 20;
const work = mkdtempSync(join(tmpdir(), 'measure-console-'));
const instance = loadInstance(join(root, 'instances', 'receiver.yaml'));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const max = (xs: number[]) => Math.max(...xs);

// A session like one from the sender or the attacker, with a realistic
// transcript, DNS questions (a DKIM key among them) and checks.
function session(i: number, at: number): { record: SessionRecord; folder?: Folder } {
  const time = (ms: number) => new Date(at + ms).toISOString();
  const kind = i % 20 === 0 ? 'refused' : i % 10 === 1 ? 'reject' : i % 7 === 2 ? 'junk' : 'inbox';
  const spoof = kind !== 'inbox';
  const from = spoof ? 'ceo@sender.test' : `alice${i % 50}@sender.test`;
  const lines = [
    'S: 220 mx.receiver.test ESMTP mail-lab receiver',
    'C: EHLO mta.sender.test',
    'S: 250-mx.receiver.test Nice to meet you, mta.sender.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 SIZE 10485760',
    'C: STARTTLS',
    'S: 220 2.0.0 Ready to start TLS',
    'C: EHLO mta.sender.test',
    'S: 250-mx.receiver.test Nice to meet you, mta.sender.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 10485760',
    `C: MAIL FROM:<${from}>`,
    'S: 250 2.1.0 Accepted',
    `C: RCPT TO:<${kind === 'refused' ? 'nobody' : 'alice'}@receiver.test>`,
    ...(kind === 'refused' ? ['S: 550 5.1.1 No such mailbox: nobody@receiver.test', 'C: QUIT', 'S: 221 Bye'] : ['S: 250 2.1.5 Accepted', 'C: DATA', 'S: 354 End data with <CR><LF>.<CR><LF>']),
  ];
  const record: SessionRecord = {
    id: `m${i.toString(36).padStart(15, '0')}`,
    instance: 'receiver',
    startedAt: time(0),
    endedAt: time(60),
    client: { address: spoof ? '192.0.2.66' : '192.0.2.10', port: 40000 + (i % 20000), hostname: spoof ? 'mta.attacker.test' : 'mta.sender.test', helo: 'mta.sender.test' },
    tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
    transcript: lines.map((line, n) => ({ at: time(n), line })),
    transactions: [],
  };
  if (kind === 'refused') return { record };
  const pass = (result: string, reason: string) => ({ result, reason });
  const transaction: Transaction = {
    at: time(15),
    envelope: { mailFrom: from, rcptTo: ['alice@receiver.test'] },
    message: { messageId: `<m${i}@sender.test>`, from, subject: `Message number ${i}`, size: 1200 + (i % 500) },
    dns: [
      { at: time(16), name: 'rsa2048._domainkey.sender.test', type: 'TXT', ms: 1, cached: i % 3 !== 0, ttl: 5, answer: [['v=DKIM1; k=rsa; p=' + 'A'.repeat(392)]] },
      { at: time(17), name: 'sender.test', type: 'TXT', ms: 1, cached: false, ttl: 5, answer: [['v=spf1 ip4:192.0.2.10 -all']] },
      { at: time(18), name: '_dmarc.sender.test', type: 'TXT', ms: 1, cached: false, ttl: 5, answer: [['v=DMARC1; p=reject; rua=mailto:dmarc-reports@receiver.test']] },
      { at: time(19), name: '_dmarc.test', type: 'TXT', ms: 1, cached: true, ttl: 5, error: 'ENOTFOUND' },
    ],
    checks: {
      spf: { ...pass(spoof ? 'fail' : 'pass', 'mx.receiver.test: domain of sender.test designates 192.0.2.10 as permitted sender'), domain: 'sender.test', record: 'v=spf1 ip4:192.0.2.10 -all' },
      dkim: spoof ? [] : [{ ...pass('pass', 'signature verified with the published key'), domain: 'sender.test', selector: 'rsa2048', algorithm: 'rsa-sha256', aligned: true }],
      dmarc: { ...pass(spoof ? 'fail' : 'pass', spoof ? 'neither SPF nor DKIM passed for a domain aligned with the From domain' : 'aligned and passing: SPF (sender.test)'), fromDomain: 'sender.test', policy: 'reject', published: 'reject', record: 'v=DMARC1; p=reject' },
      arc: { ...pass('none', 'no ARC headers'), instances: 0 },
    },
    decision:
      kind === 'reject'
        ? { disposition: 'reject', code: 550, enhanced: '5.7.1', reason: 'DMARC fail for sender.test (p=reject)' }
        : { disposition: kind === 'junk' ? 'junk' : 'inbox', reason: kind === 'junk' ? 'DMARC fail for sender.test (p=quarantine)' : 'DMARC pass for sender.test' },
    deliveries: [],
  };
  record.transactions.push(transaction);
  record.transcript.push({ at: time(40), line: `S: ${kind === 'reject' ? '550 5.7.1 Message rejected' : '250 2.6.0 Delivered'}` }, { at: time(50), line: 'C: QUIT' }, { at: time(51), line: 'S: 221 Bye' });
  return { record, folder: kind === 'reject' ? undefined : kind === 'junk' ? 'Junk' : 'INBOX' };
}

async function fill(): Promise<void> {
  const sessions = new SessionStore(join(work, 'sessions'), instance.sessionsKept, new WriteAheadLog(join(work, 'wal'), pino({ level: 'silent' })));
  const maildir = new Maildir(join(work, 'mail'), instance.hostname);
  const started = Date.now() - count * 1000; // one a second, ending now
  for (let i = 0; i < count; i++) {
    const { record, folder } = session(i, started + i * 1000);
    if (folder) {
      const message = Buffer.from(`From: ${record.transactions[0].message!.from}\r\nTo: alice@receiver.test\r\nSubject: ${record.transactions[0].message!.subject}\r\n\r\nHello.\r\n`);
      const written = await maildir.write('alice@receiver.test', folder, '', message);
      maildir.commit([written]);
      const { path: _path, ...delivery } = written;
      record.transactions[0].deliveries.push(delivery);
    }
    await sessions.save(record, false);
  }
}

async function timed(url: string): Promise<{ ms: number; bytes: number; status: number }> {
  const start = performance.now();
  const response = await fetch(url);
  const body = await response.arrayBuffer();
  return { ms: performance.now() - start, bytes: body.byteLength, status: response.status };
}

try {
  let start = performance.now();
  await fill();
  console.log(`filled ${count} sessions (and their messages) in ${((performance.now() - start) / 1000).toFixed(1)} s`);

  // What a restarted MTA does: read the session directory into its index.
  start = performance.now();
  const sessions = new SessionStore(join(work, 'sessions'), instance.sessionsKept, new WriteAheadLog(join(work, 'wal'), pino({ level: 'silent' })));
  console.log(`SessionStore opened (index of ${sessions.list().length} sessions) in ${(performance.now() - start).toFixed(0)} ms`);
  const maildir = new Maildir(join(work, 'mail'), instance.hostname);
  const server = await startApi({ host: '127.0.0.1', port: 0 }, { instance, maildir, sessions, queue: new Queue(join(work, 'queue')), dnsControl: { host: '127.0.0.1', port: 1 } });
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const all = sessions.list();
  const middle = all[Math.floor(all.length / 2)].id;
  const inbox = (await (await fetch(`${base}/api/mailboxes/alice@receiver.test/INBOX?limit=1`)).json()) as { items: { id: string; session: string }[] };
  const message = inbox.items[0];
  const paths = [
    '/',
    '/console/console.js',
    '/api/health',
    '/api/mailboxes',
    '/api/queue',
    '/api/sessions/page?limit=50',
    '/api/sessions/page?limit=50&disposition=reject',
    `/api/sessions/page?limit=50&before=${middle}`,
    '/api/mailboxes/alice@receiver.test/INBOX?limit=50',
    '/api/mailboxes/alice@receiver.test/Junk?limit=50',
    `/api/messages/${message.id}`,
    `/api/sessions/${message.session}`,
    `/api/messages/${message.id}/parts`,
    '/api/sessions',
  ];
  // Rounds over all requests, so that no request is favoured by its place
  // (the first round meets a cold process: its figures are the "first").
  const times = new Map(paths.map((p) => [p, [] as number[]]));
  const sizes = new Map<string, number>();
  for (let round = 0; round < RUNS; round++) {
    for (const path of paths) {
      const { ms, bytes, status } = await timed(base + path);
      if (status !== 200) throw new Error(`${path}: HTTP ${status}`);
      times.get(path)!.push(ms);
      sizes.set(path, bytes);
    }
  }
  console.log(`\n${'request'.padEnd(58)} ${'first'.padStart(7)} ${'median'.padStart(7)} ${'max'.padStart(7)}  bytes   (ms; ${RUNS} rounds)`);
  for (const [path, ms] of times) {
    console.log(`${path.slice(0, 58).padEnd(58)} ${ms[0].toFixed(1).padStart(7)} ${median(ms).toFixed(1).padStart(7)} ${max(ms).toFixed(1).padStart(7)}  ${sizes.get(path)}`);
  }

  // The console's start: its files and first data, all at once as a browser asks.
  const initial = ['/', ...['console.js', 'console.css', 'dom.js', 'lists.js', 'message.js', 'why.js'].map((f) => `/console/${f}`), '/api/health', '/api/mailboxes', '/api/queue', '/api/sessions/page?limit=50'];
  const loads = [];
  for (let i = 0; i < RUNS; i++) {
    start = performance.now();
    await Promise.all(initial.map((p) => timed(base + p)));
    loads.push(performance.now() - start);
  }
  console.log(`\nthe console's ${initial.length} initial requests together: median ${median(loads).toFixed(1)} ms, max ${max(loads).toFixed(1)} ms`);

  // The live events' look at the newest sessions, every 250 ms while a console is open.
  const looks = [];
  for (let i = 0; i < RUNS; i++) {
    start = performance.now();
    sessions.list().slice(0, 50);
    looks.push(performance.now() - start);
  }
  console.log(`one look of the event stream's timer (sessions.list()): median ${median(looks).toFixed(2)} ms, max ${max(looks).toFixed(2)} ms`);

  // A real browser, when there is one: navigation to the first row on screen.
  if (!(await whyNoBrowser())) {
    const browser = await launchBrowser();
    try {
      const page = await browser.context.newPage();
      for (const [name, hash] of [['sessions', '#/sessions'], ['INBOX', '#/mailbox/alice%40receiver.test/INBOX'], ['one message', `#/message/${encodeURIComponent(message.id)}`]]) {
        const times = [];
        for (let i = 0; i < 5; i++) {
          await page.goto('about:blank');
          start = performance.now();
          await page.goto(`${base}/${hash}`);
          await page.locator(name === 'one message' ? '.transcript li' : 'tbody tr').first().waitFor();
          times.push(performance.now() - start);
        }
        console.log(`browser, navigation to the first ${name === 'one message' ? 'transcript line of one message' : `row of ${name}`} on screen: median ${median(times).toFixed(0)} ms, max ${max(times).toFixed(0)} ms (5 runs)`);
      }
    } finally {
      await browser.close();
    }
  }
  server.close();
} finally {
  rmSync(work, { recursive: true, force: true });
}
