// A mistake or a situation the person at the terminal can fix: printed as
// its message alone, without a stack trace.
export class LabError extends Error {
  exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'LabError';
    this.exitCode = exitCode;
  }
}

export const START_HINT = 'start it with: npm run lab';
