// npm run lab -- class init: gives the class its credentials (services/lib/classroom.ts).
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ClassError, CLASS_FILE, GRADER, GRADER_FILE, issueCredentials, TEACHER } from '../../services/lib/classroom.ts';
import { LabError } from './errors.ts';
import { table } from './table.ts';

export const CLASS_DIR = new URL('../../classroom/', import.meta.url).pathname;

export const usage = `npm run lab -- class init [--reset NAME]... [--reset-all] [--dir DIR]

Reads the class file, DIR/${CLASS_FILE} (DIR is classroom/ by default; start
from classroom/example.yaml), and gives a credential to the teacher and to
each student who has none yet. The new credentials are printed once: hand each
student theirs. The lab keeps only their hashes (DIR/credentials.json), so a
lost credential cannot be shown again; --reset NAME issues a new one for NAME
(the old one stops working), --reset-all for everyone.

It also makes the lab's own credential, "${GRADER}", when DIR has none: the
exercise checks use it to act as the teacher and to submit mail for a student.
The lab reads it itself, from DIR/${GRADER_FILE} (mode 0644, for the services'
user under Docker); --reset ${GRADER} makes a new one.

A student logs in to the consoles with the credential, submits mail at the
sender as <name>@<domain> with it as the password, and edits their zone with
it (npm run lab -- zone). The teacher's credential sees and edits everything.
Start (or restart) the lab after init: it reads the class when it starts.`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    options: { reset: { type: 'string', multiple: true }, 'reset-all': { type: 'boolean' }, dir: { type: 'string' } },
    allowPositionals: true,
  });
  if (positionals.length !== 1 || positionals[0] !== 'init') throw new LabError('class: the command is init (npm run lab -- class --help)', 2);
  const dir = values.dir ?? CLASS_DIR;
  let result: ReturnType<typeof issueCredentials>;
  try {
    result = issueCredentials(dir, values['reset-all'] ? 'all' : (values.reset ?? []));
  } catch (error) {
    if (error instanceof ClassError) throw new LabError(error.message, 2);
    throw error;
  }
  const { classFile, issued, grader } = result;
  process.stdout.write(`${classFile.name}: ${classFile.students.length} students (${classFile.file})\n\n`);
  if (grader === 'issued') process.stdout.write(`The lab's own credential for the exercise checks ("${GRADER}") is new: ${join(dir, GRADER_FILE)}.\n\n`);
  if (issued.size === 0) {
    if (grader === 'issued') process.stdout.write('Everyone already has a credential. Start or restart the lab now: it reads the class when it starts.\n');
    else process.stdout.write('Everyone already has a credential: nothing new. (--reset NAME issues a new one.)\n');
    return 0;
  }
  const rows = [...issued].map(([name, credential]) => {
    const student = classFile.students.find((s) => s.name === name);
    return [name, student?.domain ?? '(every domain)', student?.address ?? '-', credential];
  });
  process.stdout.write(`${table([['login', 'domain', 'submission login', 'credential'], ...rows])}\n\n`);
  process.stdout.write(`Shown this once: the lab keeps only hashes (${join(dir, 'credentials.json')}). "${TEACHER}" is yours.\n`);
  process.stdout.write('Start or restart the lab now: it reads the class when it starts.\n');
  return 0;
}
