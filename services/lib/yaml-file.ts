// A YAML file checked by hand (the class file, the exercises, the
// scenarios): its value, and `fail`, which reports a mistake as
// `file:line: path.in.file: what was expected`, at the line of the value it
// is about (or of the nearest one above it), so that whoever wrote the file
// finds it at once.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';

export type Path = (string | number)[];

export interface YamlFile {
  value: unknown;
  fail: (path: Path, message: string) => never;
}

// `error` makes the caller's kind of error from a message.
export function readYamlFile(file: string, error: (message: string) => Error, options: { merge?: boolean } = {}): YamlFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw error(`${file}: cannot read: ${(e as Error).message}`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, merge: options.merge ?? false });
  if (doc.errors.length > 0) throw error(`${file}:${lines.linePos(doc.errors[0].pos[0]).line}: not valid YAML: ${doc.errors[0].message.split('\n')[0]}`);
  const fail = (path: Path, message: string): never => {
    let line: number | undefined;
    for (let p = path; line === undefined && p.length > 0; p = p.slice(0, -1)) {
      const node = doc.getIn(p, true) as { range?: [number] } | undefined;
      if (node?.range) line = lines.linePos(node.range[0]).line;
    }
    const where = path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
    throw error(`${file}${line ? `:${line}` : ''}: ${where || '(top)'}: ${message}`);
  };
  return { value: doc.toJS(), fail };
}
