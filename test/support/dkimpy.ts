// dkimpy (Debian's python3-dkim), an independent DKIM verifier: it verifies
// each DKIM-Signature of a message, asking for keys either the lab DNS
// (host:port) or a dns.json file of test data. Resolves [true, false, ...],
// one result per signature, in order.
import { execFile } from 'node:child_process';

const DKIMPY = `
import json, sys, dkim, dns.resolver
where = sys.argv[1]
if where.endswith('.json'):
    records = {name: ''.join(value['TXT'][0]).encode() for name, value in json.load(open(where)).items()}
    def txt(name, timeout=5):
        return records.get(name.decode().rstrip('.'))
else:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [where.rsplit(':', 1)[0]]
    resolver.port = int(where.rsplit(':', 1)[1])
    def txt(name, timeout=5):
        try:
            answer = resolver.resolve(name.decode(), 'TXT', lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b''.join(answer[0].strings)
message = sys.stdin.buffer.read()
verifier = dkim.DKIM(message)
count = sum(1 for name, _ in verifier.headers if name.lower() == b'dkim-signature')
print(json.dumps([verifier.verify(idx=i, dnsfunc=txt) for i in range(count)]))
`;

export function dkimpyVerify(text: string, keysFrom: string): Promise<boolean[]> {
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/python3', ['-c', DKIMPY, keysFrom], { timeout: 20_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`dkimpy: ${error.message}\n${stderr}`));
      else resolve(JSON.parse(stdout));
    });
    child.stdin!.end(Buffer.from(text, 'latin1'));
  });
}
