// The students' mailboxes (classroom mode): the receiver is also the MX of
// every student's domain, with <name>@<domain> and postmaster@<domain>
// (RFC 5321 section 4.5.1). Publishing the MX record is the student's work.
import { MAILBOXES_AT, type Classroom } from '../../lib/classroom.ts';
import type { Instance } from '../instance.ts';

// domain -> local parts, at the instance that holds the students' mailboxes.
export function studentMailboxes(instance: Instance, classroom: Classroom | undefined): Map<string, Set<string>> | undefined {
  if (!classroom || instance.name !== MAILBOXES_AT) return undefined;
  return new Map(classroom.students.map((s) => [s.domain, new Set([s.name, 'postmaster'])]));
}
