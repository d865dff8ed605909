import { parseEnv } from 'node:util';
import { main, StartupError } from './server.ts';
import { startDenoServer } from './deno/server.ts';

/** Variables from `.env` in the working directory, if there is one; the real environment wins. */
function dotEnv(): Record<string, string> {
  try {
    return parseEnv(Deno.readTextFileSync('.env')) as Record<string, string>;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new StartupError(`cannot read .env: ${(error as Error).message}`, { cause: error });
  }
}

/** Deno entrypoint: `deno task dev`, or `deno run -A src/runtime/deno.ts`. */
await main(() => startDenoServer({ env: { ...dotEnv(), ...Deno.env.toObject() } }), {
  onSignal: (signal, handler) => Deno.addSignalListener(signal, handler),
  exit: (code) => Deno.exit(code),
  printError: (text) => console.error(text),
});
