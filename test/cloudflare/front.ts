/**
 * What the Cloudflare tests run: the front Worker (src/runtime/workerd.ts) in Miniflare, and the
 * Node server that stands in for its container (the same server the container image runs),
 * reached through a Tap (./tap.ts) that records what crosses:
 *
 *   client → Worker → TranscriberContainer → tap → Node server → fake OpenAI
 */
import { fileURLToPath } from 'node:url';
import { Miniflare, type WorkerOptions } from 'miniflare';
import type { Logger } from '../../src/log.ts';
import { startNodeServer, type NodeServer } from '../../src/runtime/node/server.ts';
import type { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { bundleWorker, COMPATIBILITY_DATE } from '../runtimes/workerd-harness.ts';
import type { Tap } from './tap.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The Node server with what the Worker forwards to a real container (see container-settings.ts), on a free port; the tests put a Tap in front of it. */
export function startContainerServer(fake: FakeOpenAI, log: Logger): Promise<NodeServer> {
  return startNodeServer({
    env: {
      PORT: '0',
      HOST: '127.0.0.1',
      OPENAI_API_KEY: fake.apiKey,
      OPENAI_BASE_URL: fake.baseUrl,
      USE_DISPATCHER: 'false',
      // A fast replay delivers the whole capture before the provider connection opens: hold it all.
      FORCE_COMMIT_TIMEOUT: '0.5',
      PROVIDER_QUEUE_MS: '60000',
      FINISH_TIMEOUT_MS: '3000',
      // Frames unchanged at the provider too: every one of them is sent.
      SILENCE_GATE: 'false',
      // It shares the test's event loop, which Miniflare's synchronous proxy calls
      // (getDurableObjectNamespace, a stub's RPC: Atomics.wait) stall, 604 ms measured, and
      // the tests' fast replays keep busy: not load to refuse.
      MAX_EVENT_LOOP_LAG_MS: '0',
      MAX_EVENT_LOOP_UTILIZATION: '0',
    },
    log,
  });
}

/**
 * The front Worker pointed at `tap` (CONTAINER_URL_OVERRIDE), with the fake's key and `bindings`;
 * `durableObjects` besides CONTAINER, and `workers` beside it (a dispatcher's script).
 */
export async function startFront(options: {
  fake: FakeOpenAI;
  tap: Tap;
  bindings: Record<string, string>;
  durableObjects?: WorkerOptions['durableObjects'];
  workers?: WorkerOptions[];
}): Promise<{ mf: Miniflare; base: URL }> {
  const mf = new Miniflare({
    host: '127.0.0.1',
    port: 0,
    workers: [
      {
        name: 'front',
        modules: await bundleWorker('src/runtime/workerd.ts'),
        modulesRoot: ROOT,
        compatibilityDate: COMPATIBILITY_DATE,
        bindings: { OPENAI_API_KEY: options.fake.apiKey, OPENAI_BASE_URL: options.fake.baseUrl, CONTAINER_URL_OVERRIDE: options.tap.url, ...options.bindings },
        durableObjects: { CONTAINER: { className: 'TranscriberContainer', useSQLite: true }, ...options.durableObjects },
      },
      ...(options.workers ?? []),
    ],
  });
  return { mf, base: await mf.ready };
}
