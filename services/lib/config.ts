// Settings come from the environment and are checked once, at start. A bad value
// stops the service with a message that names the variable, never halfway through.

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface Endpoint {
  host: string;
  port: number;
}

type Env = Record<string, string | undefined>;

export function readString(env: Env, name: string, fallback: string): string {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  return value;
}

export function readPort(text: string, name: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new ConfigError(`${name}: "${text}" is not a port number (0-65535)`);
  }
  return Number(text);
}

// host:port, where host is an IPv4 address or [IPv6] or a name.
export function readEndpoint(env: Env, name: string, fallback: string): Endpoint {
  const text = readString(env, name, fallback);
  const match = /^(\[[^\]]+\]|[^:\[\]]+):([^:]+)$/.exec(text);
  if (!match) {
    throw new ConfigError(`${name}: "${text}" is not host:port (example: 0.0.0.0:53)`);
  }
  const host = match[1].replace(/^\[|\]$/g, '');
  return { host, port: readPort(match[2], name) };
}

export function readInteger(env: Env, name: string, fallback: number, min: number, max: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}: "${text}" is not a whole number from ${min} to ${max}`);
  }
  return value;
}

export function readChoice<T extends string>(env: Env, name: string, fallback: T, choices: readonly T[]): T {
  const text = readString(env, name, fallback);
  if (!choices.includes(text as T)) {
    throw new ConfigError(`${name}: "${text}" is not one of ${choices.join(', ')}`);
  }
  return text as T;
}

// Entry points call this around their start: a configuration mistake is a
// one-line message and exit code 2, anything else a stack trace.
export function exitOnConfigError(error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`configuration error: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
