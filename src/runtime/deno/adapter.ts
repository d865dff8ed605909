import { listenFailure, sharedCodec, type ServerAdapter } from '../server.ts';
import { denoBase64 } from './base64.ts';
import { denoConnector } from './connector.ts';
import { denoLocalRecognizer } from './local.ts';
import { loadOpusModule } from './wasm.ts';
import { createDenoWebSocket } from './websocket.ts';

/** Deno's seams for startServer: Deno.serve, and our upgrade helper on Deno.upgradeWebSocket. */
export const denoAdapter: ServerAdapter<ReturnType<typeof createDenoWebSocket>> = {
  runtime: 'deno',
  connector: denoConnector,
  base64: denoBase64,
  codec: sharedCodec(loadOpusModule),
  // Deno.upgradeWebSocket has no frame limit to set; the session's MAX_MESSAGE_BYTES applies.
  webSockets: () => createDenoWebSocket(),
  readTextFile: (path) => Deno.readTextFileSync(path),
  readFile: (path) => Deno.readFileSync(path),
  localRecognizer: denoLocalRecognizer,
  async listen(app, _sockets, at, log) {
    const server = await new Promise<Deno.HttpServer<Deno.NetAddr>>((resolve, reject) => {
      // onListen replaces Deno's own "Listening on" line, which would break JSON-lines stdout.
      let s: Deno.HttpServer<Deno.NetAddr>;
      const options: Deno.ServeTcpOptions = {
        port: at.port,
        hostname: at.host,
        onListen: () => queueMicrotask(() => resolve(s)),
        // Deno's default prints a stack to stderr; keep the logs JSON lines, as on Node.
        onError: (error) => {
          log.error('request failed', { error: error instanceof Error ? error : String(error) });
          return new Response('internal error', { status: 500 });
        },
      };
      try {
        s = Deno.serve(options, app.fetch);
      } catch (error) {
        reject(listenFailure(error, at.host, at.port));
      }
    });
    return { port: server.addr.port, close: () => server.shutdown() };
  },
};
