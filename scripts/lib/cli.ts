/** What the command-line tools (stream, replay, mix) share: one-line failures and file reads. */
import { readFileSync } from 'node:fs';

/** A problem with the command line or its input: the tool prints it alone and exits 2. */
export class UsageError extends Error {}

export function readInput(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`${path}: no such file`);
    if (code === 'EISDIR') throw new UsageError(`${path}: is a directory, not a file`);
    throw new UsageError(`${path}: cannot read it (${(error as Error).message})`);
  }
}

/** Runs a tool's main: a UsageError is printed as one line (exit 2), anything else is a bug. */
export async function runTool(main: () => Promise<void> | void): Promise<void> {
  try {
    await main();
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(error.message);
    process.exit(2);
  }
}

/** `--name value` options and positional arguments, for tools with a handful of each. */
export function parseArgs(argv: string[], known: readonly string[], flags: readonly string[] = []): { positional: string[]; options: Map<string, string> } {
  const positional: string[] = [];
  const options = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
    if (flags.includes(name)) {
      options.set(name, inline ?? 'true');
      continue;
    }
    if (!known.includes(name)) throw new UsageError(`unknown option --${name} (known: ${[...known, ...flags].map((k) => `--${k}`).join(', ')})`);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    options.set(name, value);
  }
  return { positional, options };
}
