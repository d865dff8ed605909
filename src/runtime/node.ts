import { parseEnv } from 'node:util';
import { readFileSync } from 'node:fs';
import { main, StartupError } from './server.ts';
import { startNodeServer } from './node/server.ts';

/**
 * Variables from `.env` in the working directory, if there is one; the real environment
 * wins. Read here, not with `--env-file`, so that a missing file is no error.
 */
function dotEnv(): Record<string, string> {
  try {
    return parseEnv(readFileSync('.env', 'utf8')) as Record<string, string>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new StartupError(`cannot read .env: ${(error as Error).message}`, { cause: error });
  }
}

/** Node entrypoint: `npm start`, and the production container. */
await main(() => startNodeServer({ env: { ...dotEnv(), ...process.env } }), {
  onSignal: (signal, handler) => process.on(signal, handler),
  exit: (code) => process.exit(code),
  printError: (text) => console.error(text),
});
