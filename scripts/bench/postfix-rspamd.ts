// The reference peer of npm run bench:mx: what a user would run instead of
// the lab receiver, Postfix (Debian's 3.7) with rspamd (3.4) as its milter
// checking SPF, DKIM, DMARC and ARC through the lab DNS, delivering to a
// Maildir. A private instance of each: configuration, queue, data and pid
// files under the bench's work directory, listening on loopback addresses
// only, started here and stopped here (the system's postfix and rspamd are
// never used, nor left running).
import { spawnSync, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cgroup } from './cgroup.ts';
import { headerField } from './maildir-check.ts';
import { freePort, start, stop, waitForPort } from './processes.ts';

const MASTER = '/usr/lib/postfix/sbin/master';
const POSTFIX = '/usr/sbin/postfix';
const RSPAMD = '/usr/bin/rspamd';
const RSPAMADM = '/usr/bin/rspamadm';

// The rspamd modules that run: the checks the receiver makes, and the one
// that writes their Authentication-Results into the message.
export const MODULES = ['arc', 'dkim', 'dmarc', 'milter_headers', 'spf'];

// Why the peer cannot run here, or undefined when it can.
export function peerProblem(): string | undefined {
  const missing = [MASTER, POSTFIX, RSPAMD, RSPAMADM].filter((path) => !existsSync(path));
  if (!missing.length) return undefined;
  return (
    `bench:mx needs postfix and rspamd (${missing.join(', ')} missing): ` +
    `echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections && apt-get install -y postfix rspamd`
  );
}

function user(name: string): { uid: number; gid: number } {
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (uid.status !== 0) throw new Error(`user ${name} is missing (the postfix and rspamd packages create it)`);
  return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

export interface PostfixRspamd {
  host: string;
  port: number;
  // alice@receiver.test's Maildir, where virtual(8) delivers.
  inbox: string;
  // Resolves once `count` messages are delivered (Postfix accepts into its
  // queue and delivers afterwards); rejects after timeoutMs, saying why.
  delivered(count: number, timeoutMs: number): Promise<void>;
  // What is wrong with a stored message on rspamd's side: a symbol from a
  // module other than the checks.
  inspect(message: string): string[];
  stop(): Promise<void>;
}

// Starts rspamd, then Postfix, in `dir` (fresh, under a work directory that
// _rspamd and postfix can traverse). rspamd resolves through the lab DNS at
// `dns` (host:port). hsCache: rspamd's compiled patterns, shared by the
// rounds of a run (the first start compiles them for about 20 s).
export async function startPostfixRspamd(options: { dir: string; hsCache: string; dns: string; postfix: Cgroup; rspamd: Cgroup }): Promise<PostfixRspamd> {
  const { dir, hsCache, dns } = options;
  const rspamdUser = user('_rspamd');
  const rspamdRun = join(dir, 'rspamd');
  mkdirSync(rspamdRun, { recursive: true });
  mkdirSync(hsCache, { recursive: true });
  for (const path of [rspamdRun, hsCache]) chownSync(path, rspamdUser.uid, rspamdUser.gid);
  const milter = { host: '127.0.2.11', port: await freePort('127.0.2.11') };
  const rspamdConf = join(dir, 'rspamd.conf');
  writeFileSync(rspamdConf, rspamdConfig({ run: rspamdRun, hsCache, dns, milter }));
  const enabled = modulesEnabled(rspamdConf);
  if (enabled.join(',') !== MODULES.join(',')) throw new Error(`rspamd would run the modules ${enabled.join(', ')}, not exactly ${MODULES.join(', ')} (${rspamdConf})`);

  const smtp = { host: '127.0.2.25', port: await freePort('127.0.2.25') };
  const etc = join(dir, 'postfix');
  const mail = join(dir, 'mail');
  const nobody = user('nobody');
  for (const path of [etc, join(dir, 'queue'), join(dir, 'data'), mail]) mkdirSync(path, { recursive: true });
  const postfixUser = user('postfix');
  // data_directory belongs to mail_owner; the Maildir's owner makes its folders.
  chownSync(join(dir, 'data'), postfixUser.uid, postfixUser.gid);
  chownSync(mail, nobody.uid, nobody.gid);
  writeFileSync(join(etc, 'main.cf'), mainCf({ dir, mail, smtp, milter, mailbox: nobody }));
  writeFileSync(join(etc, 'master.cf'), masterCf(smtp));
  // Makes the queue's directories with their owners and modes, and checks the configuration.
  const check = spawnSync(POSTFIX, ['-c', etc, 'check'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`postfix -c ${etc} check failed (exit ${check.status}); run it by hand to see why`);

  const maillog = join(dir, 'maillog');
  let rspamd: ChildProcess | undefined;
  let master: ChildProcess | undefined;
  const stopBoth = async () => {
    // master's SIGTERM ends its children too; the cgroups catch any left.
    if (master) await stop(master);
    if (rspamd) await stop(rspamd);
  };
  try {
    // -f: in the foreground, as our child; it drops root for _rspamd's. What
    // it says before its log file is open goes to a file beside it.
    const output = openSync(join(rspamdRun, 'console.log'), 'a');
    rspamd = start(...options.rspamd.wrap(RSPAMD, ['-f', '-c', rspamdConf, '-u', '_rspamd', '-g', '_rspamd']), { stdio: ['ignore', output, output] });
    closeSync(output);
    await waitForPort(`rspamd (log: ${join(rspamdRun, 'rspamd.log')})`, rspamd, milter.host, milter.port, 180_000);
    // Not `postfix start`: its master would leave us and live on as a daemon.
    master = start(...options.postfix.wrap(MASTER, ['-c', etc]));
    await waitForPort(`postfix (log: ${maillog})`, master, smtp.host, smtp.port);
  } catch (error) {
    await stopBoth();
    throw error;
  }

  const inbox = join(mail, 'receiver.test/alice/new');
  const count = () => (existsSync(inbox) ? readdirSync(inbox).length : 0);
  return {
    ...smtp,
    inbox,
    async delivered(expected, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (count() < expected) {
        if (Date.now() > deadline) {
          const log = existsSync(maillog) ? readFileSync(maillog, 'utf8').split('\n').filter((line) => /warning|error|fatal|reject|status=(deferred|bounced)/.test(line)) : [];
          throw new Error(`${count()} of ${expected} delivered after ${timeoutMs / 1000} s; ${maillog}: ${log.slice(-5).join(' | ') || 'nothing unusual'}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    inspect(message) {
      // milter_headers' X-Spamd-Result lists every symbol the scan gave.
      const result = headerField(message, 'X-Spamd-Result');
      if (!result) return ['no X-Spamd-Result (rspamd did not scan it)'];
      const symbols = [...result.matchAll(/;\s*([A-Z0-9_]+)\(/g)].map((m) => m[1]);
      const others = symbols.filter((symbol) => !/^(R_SPF_|R_DKIM_|DKIM_|DMARC_|ARC_)/.test(symbol));
      return others.length ? [`rspamd gave symbols of other modules: ${others.join(', ')}`] : [];
    },
    stop: stopBoth,
  };
}

// The modules rspamd would run with this configuration, by its own account.
function modulesEnabled(conf: string): string[] {
  const dump = spawnSync(RSPAMADM, ['configdump', '-c', conf, '-m'], { encoding: 'utf8' });
  const line = /^Modules enabled: (.*)$/m.exec(dump.stdout)?.[1];
  if (dump.status !== 0 || line === undefined) throw new Error(`rspamadm configdump -c ${conf} -m failed: ${dump.stderr.trim()}`);
  return line.split(', ').filter(Boolean).sort();
}

// A whole rspamd.conf of our own, not /etc/rspamd's (which loads some fifty
// modules and the regexp rules): a module runs only when it has a section.
function rspamdConfig(o: { run: string; hsCache: string; dns: string; milter: { host: string; port: number } }): string {
  return `# Written by scripts/bench/postfix-rspamd.ts for one bench:mx round.
options {
  pidfile = "${o.run}/rspamd.pid";
  # The lab DNS only (rspamd would otherwise read /etc/resolv.conf).
  dns { nameserver = ["${o.dns}"]; }
  # smtp-source connects from 127.0.0.1, which rspamd takes for local and
  # skips unless told: no local networks, and local clients checked too.
  local_addrs = [];
  check_local = true;
  check_authed = true;
  # The C modules to load: DKIM only (the default adds chartable, regexp, fuzzy_check).
  filters = "dkim";
  # The default also loads settings and bayes_expiry.
  explicit_modules = [];
  url_tld = "/usr/share/rspamd/effective_tld_names.dat";
  hs_cache_dir = "${o.hsCache}";
}
modules { path = "/usr/share/rspamd/plugins"; }
logging {
  type = "file";
  filename = "${o.run}/rspamd.log";
  # The default level: a line per message, as a real installation keeps.
  level = "info";
}
# The milter Postfix talks to, scanning in its own processes (self_scan: no
# separate normal workers), one per core as rspamd's scanning workers are by default.
worker "rspamd_proxy" {
  bind_socket = "${o.milter.host}:${o.milter.port}";
  milter = yes;
  timeout = 120s;
  count = ${availableParallelism()};
  upstream "local" { default = yes; self_scan = yes; }
}
# The checks, each told to check local clients (see options).
spf { check_local = true; check_authed = true; }
dkim { check_local = true; check_authed = true; }
dmarc { check_local = true; check_authed = true; }
arc { check_local = true; check_authed = true; }
milter_headers {
  # Authentication-Results, as the receiver writes; X-Spamd-Result lists the
  # symbols, so the bench can see that nothing else ran.
  use = ["authentication-results", "x-spamd-result"];
  skip_local = false;
  skip_authenticated = false;
}
# rspamd's own scores for these symbols (without them every symbol weighs 0).
group "policies" { .include "/etc/rspamd/scores.d/policies_group.conf" }
# rspamd's default thresholds. The bench message scores 0.3 (R_SPF_FAIL 1,
# R_DKIM_ALLOW -0.2, DMARC_POLICY_ALLOW -0.5), far below them; greylisting
# would need the greylist module and redis, neither of which is here.
actions { reject = 15; add_header = 6; }
`;
}

function mainCf(o: { dir: string; mail: string; smtp: { host: string; port: number }; milter: { host: string; port: number }; mailbox: { uid: number; gid: number } }): string {
  return `# Written by scripts/bench/postfix-rspamd.ts for one bench:mx round.
# Postfix 3.7's defaults otherwise, its durability among them: cleanup
# fsyncs the queue file before smtpd's 250, virtual fsyncs the Maildir file.
compatibility_level = 3.6
queue_directory = ${o.dir}/queue
data_directory = ${o.dir}/data
myhostname = mx.receiver.test
# Postfix wants an address configured on an interface here, which
# 127.0.2.25 is not (lo has 127.0.0.1/8); smtpd binds 127.0.2.25 by
# master.cf, and nothing leaves the machine (the transports below).
inet_interfaces = loopback-only
inet_protocols = ipv4
# Not 127.0.0.1, the bench client: an untrusted client, relaying nowhere.
mynetworks = 127.0.2.25/32
# No local delivery: receiver.test is a virtual mailbox domain.
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = receiver.test
virtual_mailbox_base = ${o.mail}
# The trailing / makes it a Maildir.
virtual_mailbox_maps = inline:{ alice@receiver.test=receiver.test/alice/ }
virtual_uid_maps = static:${o.mailbox.uid}
virtual_gid_maps = static:${o.mailbox.gid}
# Nothing leaves: not a bounce, not a relayed message.
default_transport = error:bench:mx sends no mail out
relay_transport = error:bench:mx sends no mail out
smtpd_milters = inet:${o.milter.host}:${o.milter.port}
# Without rspamd, no 250 (Postfix's default, said for clarity).
milter_default_action = tempfail
# 20 sessions fit Postfix's defaults: 100 smtpd processes
# (default_process_limit), 50 sessions per client (anvil).
maillog_file_prefixes = ${o.dir}
maillog_file = ${o.dir}/maillog
`;
}

// Only the services this mail flow uses; none chrooted (the queue is not
// under /var/spool/postfix, where Debian's chroot has its files).
function masterCf(smtp: { host: string; port: number }): string {
  return `# service type private unpriv chroot wakeup maxproc command
${smtp.host}:${smtp.port} inet n - n - - smtpd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
error unix - - n - - error
retry unix - - n - - error
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
postlog unix-dgram n - n - 1 postlogd
`;
}
