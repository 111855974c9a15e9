// The tools a class's students use, as the class tests call them against the
// embedded lab: `npm run exercise` and `npm run lab -- zone` with a student's
// credential, the zone-edit API at the receiver, and DKIM keys at the sender.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { root, type Lab } from '../../scripts/lab/compose.ts';
import { call, endpoints } from './classroom-flow.ts';

const run = promisify(execFile);

export function exerciseTools(lab: Lab, credentials: () => Map<string, string>) {
  const api = endpoints(lab);
  // A tool as a person runs it, with their credential; its exit code and output.
  async function tool(script: string, args: string[], who: string) {
    try {
      const { stdout, stderr } = await run(process.execPath, [script, ...args], { cwd: root, env: { ...process.env, LAB_TOKEN: credentials().get(who)! }, timeout: 60_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }
  const exercise = (who: string, ...args: string[]) => tool('scripts/exercise.ts', args, who);
  return {
    api,
    exercise,
    zoneAdd: async (who: string, ...lines: string[]) => assert.equal((await tool('scripts/lab.ts', ['zone', 'add', ...lines], who)).code, 0),
    // The zone-edit API, through the receiver's console API.
    async zoneApi(who: string, change: { add?: string[]; delete?: string[] }) {
      const answer = await call(`${api.receiverApi}/api/zone/records`, credentials().get(who), 'POST', change);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
    },
    async dkimKey(who: string, selector: string): Promise<string> {
      const answer = await call(`${api.senderApi}/api/classroom/dkim`, credentials().get(who), 'POST', { selector, algorithm: 'rsa-2048' });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return answer.body.zoneLine;
    },
    // `npm run exercise -- check N` must fail (exit 1) with a reason that says
    // each of `reasons`, or pass (exit 0).
    async fails(who: string, n: number, ...reasons: (string | RegExp)[]) {
      const { code, stdout, stderr } = await exercise(who, 'check', String(n));
      assert.equal(code, 1, `${who}, exercise ${n}: expected exit 1 (not passed)\n${stdout}${stderr}`);
      for (const r of reasons) assert.match(stdout, typeof r === 'string' ? new RegExp(r.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : r, `${who}, exercise ${n}`);
    },
    async passes(who: string, n: number) {
      const { code, stdout, stderr } = await exercise(who, 'check', String(n));
      assert.equal(code, 0, `${who}, exercise ${n}: expected exit 0 (passed)\n${stdout}${stderr}`);
    },
  };
}
