// The MX's write-ahead log on its own: entries read back whole and nothing
// after a torn one, checkpoints that delete the files only once a syncfs
// succeeded, and recovery that restores what is missing and nothing twice.
// The receiver's crash tests are in mx-durability.test.ts.
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { readEntries, recover, WriteAheadLog, type Entry } from '../services/mta/store/write-ahead-log.ts';

function lab(): { data: string; wal: string; errors: string[]; log: WriteAheadLog } {
  const data = mkdtempSync(join(tmpdir(), 'wal-'));
  const errors: string[] = [];
  const logger = pino({ level: 'error' }, { write: (line: string) => errors.push(JSON.parse(line).msg) });
  return { data, wal: join(data, 'wal'), errors, log: new WriteAheadLog(join(data, 'wal'), logger) };
}

function accepted(data: string, n: number): Entry {
  const inbox = join(data, 'mail/receiver.test/alice');
  return {
    message: Buffer.from(`Subject: ${n}\r\n\r\nmessage ${n}\r\n`),
    copies: [{ path: join(inbox, 'new', `m${n}`), prefix: `Delivered-To: alice@receiver.test\r\n` }],
    session: { file: join(data, 'sessions/s1.jsonl'), text: `{"line":${n}}\n` },
  };
}

const logFiles = (wal: string) => (existsSync(wal) ? readdirSync(wal) : []);

test('entries read back as written, and reading stops at an entry a crash cut short', async () => {
  const { data, wal, log } = lab();
  try {
    await Promise.all([1, 2, 3].map((n) => log.commit(accepted(data, n))));
    const [file] = logFiles(wal);
    const text = readFileSync(join(wal, file));
    const read = readEntries(text, data);
    assert.deepEqual(
      read.map((e) => [e.message!.toString(), e.copies, e.session]),
      [1, 2, 3].map((n) => [accepted(data, n).message!.toString(), accepted(data, n).copies, accepted(data, n).session]),
    );
    // The next entry, torn: only its first half reached the disk.
    const whole = readFileSync(join(wal, file));
    await log.commit(accepted(data, 4));
    const four = readFileSync(join(wal, file)).subarray(whole.length);
    writeFileSync(join(wal, file), Buffer.concat([whole, four.subarray(0, four.length >> 1)]));
    assert.equal(readEntries(readFileSync(join(wal, file)), data).length, 3);
    // Zeros where the kernel had extended the file but not written it.
    appendFileSync(join(wal, file), Buffer.alloc(4096));
    assert.equal(readEntries(readFileSync(join(wal, file)), data).length, 3);
    // An entry naming a file outside the data directory is not read, nor what follows.
    writeFileSync(join(wal, file), whole);
    await log.commit({ ...accepted(data, 5), copies: [{ path: join(data, '..', 'elsewhere', 'm5'), prefix: '' }] });
    await log.commit(accepted(data, 6));
    assert.equal(readEntries(readFileSync(join(wal, file)), data).length, 3);
  } finally {
    await log.close();
    rmSync(data, { recursive: true, force: true });
  }
});

test('a checkpoint deletes the log files once sync --file-system succeeded, and keeps them while it fails', async () => {
  const { data, wal, errors, log } = lab();
  const path = process.env.PATH;
  const bin = join(data, 'bin');
  try {
    await log.commit(accepted(data, 1));
    assert.equal(logFiles(wal).length, 1);
    // A sync first on PATH that fails while its .fail file is there (the
    // helper that runs it starts with the first checkpoint, and keeps PATH).
    mkdirSync(bin);
    writeFileSync(join(bin, 'sync'), '#!/bin/sh\nif [ -e "$0.fail" ]; then echo "sync: error syncing: Input/output error" >&2; exit 1; fi\nexec /bin/sync "$@"\n');
    chmodSync(join(bin, 'sync'), 0o755);
    writeFileSync(join(bin, 'sync.fail'), '');
    process.env.PATH = `${bin}:${path}`;
    await log.checkpoint();
    assert.equal(logFiles(wal).length, 1, 'kept: nothing says its files are on disk');
    assert.match(errors.join('\n'), /checkpoint failed/);
    // Mail goes on meanwhile, into a new file.
    await log.commit(accepted(data, 2));
    assert.equal(logFiles(wal).length, 2);
    rmSync(join(bin, 'sync.fail'));
    await log.checkpoint();
    assert.deepEqual(logFiles(wal), []);
    // The helper that runs sync, killed: a checkpoint that asked it before
    // its end was seen fails, and the next starts another.
    const helper = execFileSync('pgrep', ['-P', String(process.pid), '-f', 'read -r path'], { encoding: 'utf8' }).trim();
    process.kill(Number(helper), 'SIGKILL');
    await log.commit(accepted(data, 3));
    await log.checkpoint();
    await log.checkpoint();
    assert.deepEqual(logFiles(wal), []);
  } finally {
    process.env.PATH = path;
    await log.close();
    rmSync(data, { recursive: true, force: true });
  }
});

test('recovery writes again what is missing or damaged, leaves what is whole (a copy a mail client moved to cur/ too), and deletes the logs', async () => {
  const { data, wal, log } = lab();
  try {
    const entries = [1, 2, 3, 4].map((n) => accepted(data, n));
    for (const entry of entries) await log.commit(entry);
    // What the files would hold had the machine stopped now: the log's files
    // are kept (a copy of them, as a checkpoint would delete them).
    const kept = join(data, 'kept');
    mkdirSync(kept);
    for (const name of logFiles(wal)) writeFileSync(join(kept, name), readFileSync(join(wal, name)));
    await log.close();
    rmSync(wal, { recursive: true });
    renameSync(kept, wal);

    const inbox = join(data, 'mail/receiver.test/alice');
    const stored = (n: number) => Buffer.concat([Buffer.from(entries[n - 1].copies[0].prefix), entries[n - 1].message!]);
    mkdirSync(join(inbox, 'new'), { recursive: true });
    mkdirSync(join(inbox, 'cur'), { recursive: true });
    writeFileSync(join(inbox, 'new/m1'), stored(1)); // on disk, whole
    writeFileSync(join(inbox, 'cur/m2:2,S'), stored(2)); // moved and read by a mail client
    writeFileSync(join(inbox, 'new/m3'), Buffer.alloc(stored(3).length)); // its size written, not its data
    // m4 is missing; the session file has the first line and half the second.
    mkdirSync(join(data, 'sessions'));
    writeFileSync(join(data, 'sessions/s1.jsonl'), '{"line":1}\n{"li');

    const recovered = await recover(wal);
    assert.deepEqual(recovered.copies.sort(), [join(inbox, 'new/m3'), join(inbox, 'new/m4')]);
    assert.deepEqual(recovered.sessions, [join(data, 'sessions/s1.jsonl')]);
    assert.deepEqual(readdirSync(join(inbox, 'new')).sort(), ['m1', 'm3', 'm4']);
    assert.deepEqual(readdirSync(join(inbox, 'cur')), ['m2:2,S']);
    for (const n of [1, 3, 4]) assert.deepEqual(readFileSync(join(inbox, 'new', `m${n}`)), stored(n));
    assert.equal(readFileSync(join(data, 'sessions/s1.jsonl'), 'utf8'), '{"line":1}\n{"li\n{"line":2}\n{"line":3}\n{"line":4}\n');
    assert.deepEqual(logFiles(wal), []);
    // Once more: nothing left to do.
    assert.deepEqual(await recover(wal), { logs: 0, copies: [], sessions: [] });
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});
