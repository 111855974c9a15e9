// Makes the lab's TLS certificates: one lab CA, and for each MTA host a key
// and a certificate for its name, signed by that CA. smtp-server's bundled
// certificate has expired, and a lab host should present its own name.
//   node scripts/make-certs.ts [--dir instances/certs] [--days 3650]
// Lab-only keys, committed so a fresh clone runs STARTTLS without setup.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

export const LAB_HOSTS = ['mta.sender.test', 'mx.receiver.test', 'mta.attacker.test', 'list.forwarder.test'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

export function makeCerts(dir: string, days: number): void {
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'lab-certs-'));
  try {
    const caKey = join(dir, 'ca.key');
    const ca = join(dir, 'ca.pem');
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey]);
    openssl(['req', '-x509', '-new', '-key', caKey, '-sha256', '-days', String(days), '-subj', '/O=mail-lab/CN=mail-lab test CA', '-out', ca]);
    for (const host of LAB_HOSTS) {
      const key = join(dir, `${host}.key`);
      const request = join(work, `${host}.csr`);
      const extensions = join(work, `${host}.ext`);
      writeFileSync(extensions, `subjectAltName=DNS:${host}\nextendedKeyUsage=serverAuth,clientAuth\n`);
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
      openssl(['req', '-new', '-key', key, '-subj', `/O=mail-lab/CN=${host}`, '-out', request]);
      openssl(['x509', '-req', '-in', request, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', String(days), '-sha256', '-extfile', extensions, '-out', join(dir, `${host}.pem`)]);
    }
    rmSync(join(dir, 'ca.srl'), { force: true });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { dir: { type: 'string', default: 'instances/certs' }, days: { type: 'string', default: '3650' } } });
  makeCerts(values.dir!, Number(values.days));
  process.stdout.write(`lab CA and certificates for ${LAB_HOSTS.join(', ')} written to ${values.dir}\n`);
}
