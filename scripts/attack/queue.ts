// Item 7: one empty queue state file stopped the sender from starting
// ("Unexpected end of JSON input", no file named). The file is put into the
// running sender's queue and the sender is killed with kill -9: the lab
// runner restarts it as compose's `restart: unless-stopped` would (in well
// under a second: 100 ms, then its start), which is the path a user meets,
// so no copy of the sender is started by hand.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './net.ts';
import { outcome, type Attack } from './report.ts';

const ID = 'MXATTACK7EMPTYSTATE';

const emptyStateFile: Attack = {
  item: 7,
  name: 'an empty queue state file, then kill -9 of the sender',
  expected: 'the lab runner restarts the sender, which starts; the file is moved with its message into queue/damaged/ and the log names it',
  timeoutMs: 20_000,
  async run(lab) {
    const queue = join(lab.service('sender').env.MTA_DATA_DIR, 'queue');
    writeFileSync(join(queue, `${ID}.json`), '');
    writeFileSync(join(queue, `${ID}.eml`), `From: alice@sender.test\r\nTo: bob@receiver.test\r\nSubject: damaged\r\n\r\nIts state file is empty.\r\n`);
    const pid = lab.kill9('sender');
    const restarted = await waitFor('the runner to restart the sender', () => /lab: sender is healthy again \(restarted in (\d+) ms\)/.exec(lab.said())?.[1], 15_000);
    const damaged = join(queue, 'damaged');
    const moved = existsSync(join(damaged, `${ID}.json`)) && existsSync(join(damaged, `${ID}.eml`)) && !existsSync(join(queue, `${ID}.json`));
    const logged = lab.logs('sender').find((l) => String(l.msg).includes(`${ID}.json cannot be read`));
    return outcome(
      moved && logged !== undefined,
      `pid ${pid} killed; restarted in ${restarted} ms (pid ${lab.pid('sender')}); ${moved ? `${ID}.json and .eml in queue/damaged/` : 'NOT moved into queue/damaged/'}; log: ${logged ? `"${String(logged.msg).replaceAll(lab.dataDir, '<data>')}"` : 'nothing'}`,
    );
  },
};

export const attacks: Attack[] = [emptyStateFile];
