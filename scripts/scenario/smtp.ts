// SMTP from the runner (services/mta/outbound/smtp-client.ts): a server that cannot
// be reached is a situation the person running scenarios can fix.
import { smtpSend as send, type SmtpSend, type Reply } from '../../services/mta/outbound/smtp-client.ts';
import { LabError } from '../lab/errors.ts';

export type { Envelope, Reply } from '../../services/mta/outbound/smtp-client.ts';

export async function smtpSend(o: SmtpSend): Promise<Reply> {
  try {
    return await send(o);
  } catch (error) {
    throw new LabError((error as Error).message);
  }
}
