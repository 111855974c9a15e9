// HTTP servers of the lab (an MTA's API, the DNS control endpoint) against
// malformed requests. Item 1: one request whose target is no URL ended the
// process it reached (an exception outside the handler), and the lab runner
// then stopped every service. Item 11: a malformed percent-encoding in a
// path was a 500.
import type { AttackLab } from './lab.ts';
import { rawHttp } from './net.ts';
import { oneLine, outcome, type Attack } from './report.ts';

// Exactly what the adversarial run sent with nc.
const NO_URL = 'GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';

function requestWithoutUrl(service: string, port: string, what: string): Attack {
  return {
    item: 1,
    name: `GET http://[ to ${what}`,
    expected: '400 {"error":"malformed request target"}; the same process goes on: its health check answers 200',
    async run(lab) {
      const pid = lab.pid(service);
      const answer = await rawHttp(lab.at(service, port), NO_URL);
      const health = await fetch(lab.service(service).health).then((r) => r.status, () => 'no answer');
      const same = lab.runs(service, pid);
      return outcome(
        answer.status === 400 && /"malformed request target"/.test(answer.body) && same && health === 200,
        `${answer.status ? `${answer.status} ${oneLine(answer.body)}` : 'no answer'}; pid ${pid} ${same ? 'still serving' : 'gone'}; health ${health}`,
      );
    },
  };
}

const badPercent: Attack = {
  item: 11,
  name: 'malformed percent-encoding in an API path (/api/sessions/%E0%A4%A)',
  expected: '400 with a JSON error (URI malformed), not a 500',
  async run(lab: AttackLab) {
    const response = await fetch(`${lab.service('receiver').console}api/sessions/%E0%A4%A`);
    const body = await response.text();
    return outcome(response.status === 400 && /URI malformed/.test(body), `${response.status} ${oneLine(body)}`);
  },
};

export const attacks: Attack[] = [
  requestWithoutUrl('receiver', 'api', "the receiver's API"),
  requestWithoutUrl('dns', 'control', 'the DNS control endpoint'),
  badPercent,
];
