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

// The lab does not answer where it should. Whoever prints it adds how to
// start the lab, or why a running one cannot be reached (notRunningHint).
export class LabNotAnswering extends LabError {
  constructor(message: string) {
    super(message);
    this.name = 'LabNotAnswering';
  }
}

export const START_HINT = 'start it with: npm run lab';
