// npm run exercise: a class's exercises, as the lab's receiver checks them
// (its exercise API): list them, read one, reveal a hint, check one
// student's exercise now, or grade the whole class.
import { parseArgs } from 'node:util';
import { ConfigError } from '../../services/lib/config.ts';
import { LabError } from '../lab/errors.ts';
import { COMPOSE_USAGE, reachLab } from '../lab/published.ts';
import { ExerciseApi, MISTAKE } from './api.ts';
import { check, grade, hint, list, show } from './commands.ts';

export const usage = `npm run exercise -- list | show N | hint N | check N | grade [options]

A class's exercises (exercises/*.yaml), checked by the lab itself: the
receiver sends fresh messages through the lab and reads its own decisions.
Needs a lab that serves a class, and a credential in LAB_TOKEN: a student's
(their own exercises) or the teacher's (any student's, with --student).
N is an exercise's number or its id.

  list                      the exercises: number, id, title, minutes (for a
                            student, also how far they are)
  show N [--student NAME]   the goal, the hints shown, the latest check and
                            the check that passed it, each with what it saw
  hint N                    reveals your next hint (a student's credential)
  check N [--student NAME]  checks the exercise now: each check pass, FAIL or
                            error, its reason and what it saw (DNS answers,
                            the message's verdicts and decision, its session)
  grade                     checks the whole class now (the teacher's
                            credential): a table of students by exercises
    --only N,M              these exercises only
    --students A,B          these students only
    --json                  print one JSON document instead of the table
    --junit FILE            also write JUnit XML: one test case per student
                            and exercise
${COMPOSE_USAGE}

Exit code: 0 passed (grade: every student passed every exercise graded, a
pass kept from before included), 1 not passed, 2 a mistake in the command
(an unknown exercise or student, LAB_TOKEN missing or refused), 3 the lab is
not running, serves no class or answered with an error (check: the lab could
not check, a DNS timeout say).

Examples:
  export LAB_TOKEN=ana-...          (the credential the teacher gave you)
  npm run exercise -- show 3
  npm run exercise -- check spf
  LAB_TOKEN=teacher-... npm run exercise -- grade --junit grades.xml`;

// Which options each command takes.
const OPTIONS: Record<string, string[]> = {
  list: [],
  show: ['student'],
  hint: [],
  check: ['student'],
  grade: ['only', 'students', 'json', 'junit'],
};

export async function main(argv: string[]): Promise<number> {
  const say = (text: string) => process.stderr.write(`exercise: ${text}\n`);
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        student: { type: 'string' },
        only: { type: 'string' },
        students: { type: 'string' },
        json: { type: 'boolean' },
        junit: { type: 'string' },
        compose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const [command, ...rest] = positionals;
    if (command === undefined) throw new LabError(`say what to do: ${Object.keys(OPTIONS).join(', ')} (npm run exercise -- --help)`, MISTAKE);
    if (!Object.hasOwn(OPTIONS, command)) throw new LabError(`unknown command "${command}": ${Object.keys(OPTIONS).join(', ')} (npm run exercise -- --help)`, MISTAKE);
    for (const option of Object.keys(values)) {
      if (option !== 'compose' && !OPTIONS[command].includes(option)) throw new LabError(`${command} takes no --${option} (npm run exercise -- --help)`, MISTAKE);
    }
    const takesExercise = command === 'show' || command === 'hint' || command === 'check';
    if (takesExercise && rest.length !== 1) throw new LabError(`${command}: name one exercise, by number or id (npm run exercise -- list)`, MISTAKE);
    if (!takesExercise && rest.length > 0) throw new LabError(`${command} takes no arguments (got ${rest.join(' ')})`, MISTAKE);
    if (values.only !== undefined && listed(values.only).length === 0) throw new LabError('--only: name exercises, by number or id, with commas between (--only 3,dkim)', MISTAKE);
    if (values.students !== undefined && listed(values.students).length === 0) throw new LabError('--students: name students, with commas between (--students ana,ben)', MISTAKE);
    if (values.junit === '') throw new LabError('--junit: give the file to write', MISTAKE);
    if (!process.env.LAB_TOKEN) throw new LabError("set LAB_TOKEN to your credential: the one the teacher gave you, or the teacher's (npm run lab -- class init printed them)", MISTAKE);

    const api = new ExerciseApi(reachLab(values.compose ?? false));
    switch (command) {
      case 'list':
        return await list(api);
      case 'show':
        return await show(api, rest[0], values.student);
      case 'hint':
        return await hint(api, rest[0]);
      case 'check':
        return await check(api, rest[0], values.student);
      default:
        return await grade(api, { only: values.only === undefined ? undefined : listed(values.only), students: values.students === undefined ? undefined : listed(values.students), json: values.json, junit: values.junit }, say);
    }
  } catch (error) {
    if (error instanceof LabError || error instanceof ConfigError) {
      say(error.message);
      return error instanceof LabError ? error.exitCode : MISTAKE;
    }
    if ((error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      say(`${(error as Error).message.split('. ')[0]} (npm run exercise -- --help)`);
      return MISTAKE;
    }
    throw error;
  }
}

const listed = (text: string) => text.split(',').map((s) => s.trim()).filter(Boolean);
