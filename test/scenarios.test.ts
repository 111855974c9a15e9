// The scenario library (scripts/scenarios/*.yaml) and its runner. The
// format checks need no lab. The library itself runs as a person runs it,
// `npm run scenario -- all`, against the embedded lab that the runner
// starts: every scenario must pass. That lab listens on fixed ports, so this
// file takes turns with lab.test.ts (support/lab-lock.ts); when the
// ports are taken by something else the run is skipped, and fails under CI.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readLab, root } from '../scripts/lab/compose.ts';
import { findPortProblems } from '../scripts/lab/preflight.ts';
import { scenarioDir } from '../scripts/scenario/cli.ts';
import { clash } from '../scripts/scenario/run.ts';
import { loadScenario, ScenarioError } from '../scripts/scenario/schema.ts';
import { lockEmbeddedLab } from './support/lab-lock.ts';

const lab = readLab();
const instances = lab.services.filter((s) => s.instance).map((s) => s.name);
const library = readdirSync(scenarioDir).filter((f) => f.endsWith('.yaml')).map((f) => loadScenario(join(scenarioDir, f), instances));
const scratch = mkdtempSync(join(tmpdir(), 'scenario-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = join(scratch, `${name}.yaml`);
  writeFileSync(file, text);
  return file;
}

// The error a scenario file gives, or '' when it loads.
function problem(name: string, text: string): string {
  const file = write(name, text);
  try {
    loadScenario(file, instances);
    return '';
  } catch (error) {
    assert.ok(error instanceof ScenarioError, String(error));
    return error.message.replace(`${scratch}/`, '');
  }
}

const good = `name: NAME
title: A spoof
lesson: Why it matters.
steps:
  - title: The attacker sends
    via: attacker
    from: ceo@sender.test
    to: alice@receiver.test
    expect:
      dmarc: fail
`;

describe('scenario files', () => {
  test('the library has every scenario the issue asks for, and more than 20', () => {
    const names = library.map((s) => s.name);
    for (const name of [
      'pass-rsa', 'pass-ed25519', 'pass-both', 'spoof-reject', 'spoof-quarantine', 'spoof-none', 'no-dmarc',
      'display-name', 'lookalike', 'body-tampered', 'dkim-replay', 'spf-unaligned', 'strict-alignment',
      'subdomain-policy', 'testing-mode', 'revoked-key', 'missing-selector', 'spf-softfail', 'spf-permerror',
      'servfail-retry', 'forwarding-alias', 'mailing-list-arc', 'policy-change',
      // issue 12: spoofing defences
      'from-twice', 'from-missing', 'from-two-mailboxes', 'arc-replay', 'spf-temperror-unsigned', 'rsa-sha1', 'null-sender',
      'from-two-at', 'from-encoded-domain', 'from-empty-group', 'from-spaced-domain', 'np-nonexistent',
      // issue 16: DMARC reports
      'report-monitoring', 'report-unauthorized', 'report-failure',
    ]) {
      assert.ok(names.includes(name), `no scenario ${name}`);
    }
    assert.ok(names.length >= 20, `${names.length} scenarios`);
    for (const s of library) assert.ok(s.lesson.length > 200, `${s.name}: a lesson of a few sentences`);
  });

  test('a mistake names the file, the line, the path in the file and what was expected', () => {
    assert.equal(problem('a', good.replace('NAME', 'a')), '');
    assert.equal(problem('b', good.replace('NAME', 'b').replace('dmarc: fail', 'dmarc: fial')), 'b.yaml:10: steps[0].expect.dmarc: expected one of pass, fail, softfail, neutral, none, temperror, permerror, policy (got "fial")');
    assert.equal(problem('c', good.replace('NAME', 'other')), 'c.yaml:1: name: expected "c", the file\'s name (got "other")');
    assert.equal(problem('d', good.replace('NAME', 'd').replace('via: attacker', 'via: mallory')), 'd.yaml:6: steps[0].via: expected one of sender, receiver, attacker, forwarder (got "mallory")');
    assert.equal(problem('e', good.replace('NAME', 'e').replace('    to:', '    too:')), 'e.yaml:8: steps[0].too: unknown key (expected one of title, id, dns, via, direct, retryOf, replay, from, fromFields, mailFrom, to, subject, headers, body, sign, tamper, observe, expect)');
    assert.equal(problem('f', good.replace('NAME', 'f').replace('    via: attacker\n', '')), 'f.yaml:5: steps[0]: expected exactly one of via: (submission), direct: (the runner speaks SMTP) or retryOf: (the queue tries again) (got none)');
    assert.match(problem('g', `${good.replace('NAME', 'g')}  - title: again\n    retryOf: first\n    expect: { disposition: inbox }\n`), /^g\.yaml:12: steps\[1\]\.retryOf: expected the id of an earlier step \(none has one\), got "first"$/);
    assert.match(problem('h', good.replace('NAME', 'h').replace('lesson: Why it matters.\n', 'lesson: Why\ndns:\n  - { name: _dmarc.sender.test, fault: broken }\n')), /^h\.yaml:5: dns\[0\]\.fault: expected servfail, timeout, delay=MS or none \(got "broken"\)$/);
    assert.match(problem('i', `${good.replace('NAME', 'i')}      code: 550\n`), /^i\.yaml:11: steps\[0\]\.expect\.code: expected a reply code and enhanced code, e\.g\. "550 5\.7\.1" \(got 550\)$/);
    assert.match(problem('j', 'name: j\nsteps: [\n'), /^j\.yaml:\d+: not valid YAML: /);
    assert.equal(problem('k', good.replace('NAME', 'k').replace('    from: ceo@sender.test\n', '    fromFields: [ceo@sender.test, ceo@sender.test]\n')), 'k.yaml:7: steps[0].fromFields: From fields written by hand are sent with direct: (a submitting MTA would fix them)');
    // report: steps
    const report = (name: string, step: string) => problem(name, `${good.replace('NAME', name)}  - title: the report\n${step}`);
    assert.equal(report('l', '    report: sender.test\n    expect: { report: { sent: true, rows: [{ source: 192.0.2.10, count: 1, dmarc: pass, disposition: none }] } }\n'), '');
    assert.equal(report('m', '    report: sender.test\n    via: sender\n    expect: { report: { sent: true } }\n'), 'm.yaml:13: steps[1].via: unknown key (expected one of title, id, dns, report, expect)');
    assert.equal(report('n', '    report: sender.test\n    expect: { dmarc: pass }\n'), 'n.yaml:13: steps[1].expect: a report: step expects report: only');
    assert.equal(report('o', '    report: sender.test\n    expect: { report: { rows: [{ source: mta.sender.test }] } }\n'), "o.yaml:13: steps[1].expect.report.rows[0].source: expected the source's IPv4 address (got \"mta.sender.test\")");
    assert.equal(problem('p', `${good.replace('NAME', 'p')}      report: { sent: true }\n`), 'p.yaml:11: steps[0].expect.report: only a report: step checks a report');
    assert.equal(problem('q', good.replace('NAME', 'q').replace('steps:', 'failureReports: yes\nsteps:')), 'q.yaml:4: failureReports: expected true or false');
    assert.equal(problem('r', `${good.replace('NAME', 'r')}      failureReport: { to: reports, fields: { Auth-Failure: dmarc } }\n`), 'r.yaml:11: steps[0].expect.failureReport.to: expected an address, local@domain (got "reports")');
  });

  test('scenarios that change DNS wait for those that use the names they change, and only for them', () => {
    const byName = (name: string) => library.find((s) => s.name === name)!;
    assert.equal(clash(byName('policy-change'), byName('spoof-reject')), false, 'another sending domain');
    assert.equal(clash(byName('policy-change'), byName('spoof-none')), false, '_dmarc.receiver.test is no concern of mail to receiver.test');
    assert.equal(clash(byName('strict-alignment'), byName('strict-alignment')), true);
    const sameDomain = loadScenario(write('k', good.replace('NAME', 'k').replace('ceo@sender.test', 'ceo@strict.test')), instances);
    assert.equal(clash(byName('strict-alignment'), sameDomain), true, 'a message From: strict.test depends on _dmarc.strict.test');
    assert.equal(clash(byName('report-monitoring'), byName('spoof-none')), true, "a report of monitor.test counts spoof-none's message");
    assert.equal(clash(byName('report-monitoring'), byName('spoof-reject')), false);
    const alsoFailures = loadScenario(write('s', good.replace('NAME', 's').replace('steps:', 'failureReports: true\nsteps:').replace('ceo@sender.test', 'ceo@strict.test')), instances);
    assert.equal(clash(byName('report-failure'), alsoFailures), true, 'failure reports are on for one scenario at a time');
  });
});

const problems = await (async () => {
  await lockEmbeddedLab();
  return findPortProblems(lab.services);
})();
if (problems.busy.length > 0 && process.env.CI === 'true') throw new Error(`the embedded lab's ports are taken: ${problems.busy.join(', ')}`);
const skip =
  (problems.missing.length > 0 && `no loopback addresses ${problems.missing.join(', ')} here (Linux has them all)`) ||
  (problems.busy.length > 0 && `the embedded lab's ports are taken (is a lab running?): ${problems.busy.join(', ')}`);

describe('npm run scenario -- all', { skip }, () => {
  test('runs the whole library against an embedded lab it starts, and every scenario passes', async (t) => {
    const junit = join(scratch, 'junit.xml');
    const started = performance.now();
    const run = await promisify(execFile)(process.execPath, ['scripts/scenario.ts', 'all', '--json', '--junit', junit], { cwd: root, timeout: 120_000 }).catch(
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    const wall = performance.now() - started;
    t.diagnostic(`wall time, lab start and stop included: ${(wall / 1000).toFixed(1)} s`);
    const result = JSON.parse(run.stdout);
    const failed = result.scenarios.filter((s: { passed: boolean }) => !s.passed);
    assert.deepEqual(failed, [], run.stderr);
    assert.equal(result.passed, library.length);
    assert.equal(result.failed, 0);
    assert.match(run.stderr, /lab ready in \d+ ms/, 'it started a lab of its own');
    assert.match(readFileSync(junit, 'utf8'), new RegExp(`<testsuite name="mail-lab scenarios" tests="${library.length}" failures="0"`));
    for (const s of result.scenarios) {
      assert.deepEqual(Object.keys(s), ['name', 'title', 'passed', 'ms', 'checks']);
      for (const c of s.checks) assert.deepEqual(Object.keys(c), ['check', 'expected', 'actual', 'passed']);
    }
  });
});
