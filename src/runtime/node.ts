import { ConfigError } from '../config.ts';
import { startNodeServer } from './node/server.ts';

/** Node entrypoint: `npm start`, and the production container. */
try {
  const server = await startNodeServer({ env: process.env });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      server.log.info('shutting down', { signal });
      void server.close().then(() => process.exit(0));
    });
  }
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(1);
}
