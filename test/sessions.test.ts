// Session records as journals: each save appends what is new, a line torn by
// a crash is skipped, and a store opened afterwards reads what was saved (and
// closes, as interrupted, what the crash left open).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { SessionStore, type SessionRecord, type Transaction } from '../services/mta/store/sessions.ts';
import { WriteAheadLog } from '../services/mta/store/write-ahead-log.ts';

// File names start with the start time: the second orders the records.
function session(id: string, second = 0): SessionRecord {
  return { id, instance: 'receiver', startedAt: `2026-11-28T10:00:0${second}.000Z`, client: { address: '192.0.2.10', port: 4000 }, transcript: [], transactions: [] };
}

// A store as the MTA opens it, with the write-ahead log beside the sessions directory.
const storeAt = (dir: string, kept: number) => new SessionStore(dir, kept, new WriteAheadLog(`${dir}-wal`, pino({ level: 'silent' })));

function transaction(messageId: string, delivery: string): Transaction {
  return {
    at: '2026-11-28T10:00:01.000Z',
    envelope: { mailFrom: 'alice@sender.test', rcptTo: ['Alice@receiver.test'] },
    message: { messageId, size: 100 },
    dns: [],
    decision: { disposition: 'inbox', reason: 'DMARC pass' },
    deliveries: [{ id: delivery, mailbox: 'alice@receiver.test', folder: 'INBOX' }],
  };
}

test('each save appends only what is new; a torn last line is skipped; a new store reads the rest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sessions-'));
  try {
    const store = storeAt(dir, 100);
    const record = session('a');
    const carried = [];
    for (let n = 1; n <= 3; n++) {
      record.transcript.push({ at: '2026-11-28T10:00:01.000Z', line: `C: MAIL FROM:<alice@sender.test> ${n}` });
      carried.push(transaction(`<m${n}@sender.test>`, `d${n}`));
      record.transactions.push(carried.at(-1)!);
      await store.save(record, true);
      // Written for good: a session of thousands of messages does not hold them all.
      assert.deepEqual(record.transactions, [], 'the live record lets go of what is saved');
    }
    const [file] = readdirSync(dir);
    const lines = readFileSync(join(dir, file), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => [l.transcriptFrom, l.transcript.length, l.transactionsFrom, l.transactions.length]),
      [[0, 1, 0, 1], [1, 1, 1, 1], [2, 1, 2, 1]],
    );

    appendFileSync(join(dir, file), '{"id":"a","transcriptFrom":3,"transcr'); // a crash halfway through a line
    const reopened = storeAt(dir, 100);
    // Open when the crash came: the new store closes it, on a line of its own.
    const { endedAt, interrupted, ...kept } = (await reopened.get('a'))!;
    assert.deepEqual(kept, { ...record, transactions: carried });
    assert.ok(endedAt && interrupted?.reason.startsWith('the MTA stopped without closing the session'));
    const text = readFileSync(join(dir, file), 'utf8');
    assert.ok(text.endsWith('"transcr\n' + text.split('\n').at(-2) + '\n'), 'the close line follows the torn one, not inside it');
    assert.deepEqual(reopened.list({ messageId: '<m2@sender.test>' }).map((s) => s.id), ['a']);
    assert.deepEqual(reopened.list({ recipient: 'alice@receiver.test' })[0].deliveries.map((d) => d.id), ['d1', 'd2', 'd3']);
    assert.equal(reopened.findDelivery('d3')?.session, 'a');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}-wal`, { recursive: true, force: true });
  }
});

test('the end of a session is saved with it, and only the newest records are kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sessions-'));
  try {
    const store = storeAt(dir, 2);
    for (const [second, id] of ['a', 'b', 'c'].entries()) {
      const record = session(id, second);
      record.transactions.push(transaction(`<${id}@sender.test>`, `d-${id}`));
      await store.save(record, true);
      record.endedAt = '2026-11-28T10:00:09.000Z';
      await store.save(record, false);
    }
    assert.deepEqual(store.list().map((s) => s.id), ['c', 'b']);
    assert.equal(readdirSync(dir).length, 2);
    const b = await store.get('b');
    assert.equal(b?.endedAt, '2026-11-28T10:00:09.000Z');
    assert.equal(b?.transactions.length, 1);
    assert.deepEqual(storeAt(dir, 2).list().map((s) => s.id), ['c', 'b']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}-wal`, { recursive: true, force: true });
  }
});

test("a watcher hears of each save with its Message-ID, and one transaction is read without the session's other lines", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sessions-'));
  try {
    const store = storeAt(dir, 100);
    const heard: string[] = [];
    const stop = store.watch('<m2@sender.test>', (id) => heard.push(id));
    const record = session('pool');
    for (let n = 1; n <= 3; n++) {
      record.transactions.push(transaction(`<m${n}@sender.test>`, `d${n}`));
      await store.save(record, true);
    }
    await store.save({ ...record, endedAt: '2026-11-28T10:00:09.000Z' }, true);
    assert.deepEqual(heard, ['pool'], 'once: the save that held it');
    stop();
    await store.save({ ...session('other', 1), transactions: [transaction('<m2@sender.test>', 'd5')] }, true);
    assert.deepEqual(heard, ['pool'], 'stopped');

    const found = await store.findTransaction('pool', '<m2@sender.test>', (t) => t.message?.messageId === '<m2@sender.test>');
    assert.equal(found?.transaction.deliveries[0].id, 'd2');
    assert.equal(found?.session.id, 'pool');
    assert.equal(found?.session.client.address, '192.0.2.10');
    assert.equal(await store.findTransaction('pool', '<m9@sender.test>', () => true), undefined);
    assert.equal(await store.findTransaction('nobody', '<m2@sender.test>', () => true), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}-wal`, { recursive: true, force: true });
  }
});
