import { ConfigError } from '../config.ts';
import { startDenoServer } from './deno/server.ts';

/** Deno entrypoint: `deno task dev`, or `deno run -A src/runtime/deno.ts`. */
try {
  const server = await startDenoServer({ env: Deno.env.toObject() });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    Deno.addSignalListener(signal, () => {
      server.log.info('shutting down', { signal });
      void server.close().then(() => Deno.exit(0));
    });
  }
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  Deno.exit(1);
}
