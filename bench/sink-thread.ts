/**
 * Runs a timing sink (bench/sinks.ts) on its own thread, so that arrivals are stamped by an
 * event loop the load generator never blocks: on the generator's thread, a frame that
 * arrives while 10,000 others are being sent would be stamped late, and the delay it shows
 * would be the generator's, not the server's.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { deepgramSink, openaiSink, type ProviderStreamTiming, type TimingSink } from './sinks.ts';

type Kind = 'openai' | 'deepgram';
type Reply = { env: Record<string, string> } | { streams: { session: number; arrivals: BigInt64Array }[] } | { closed: true };

/** Starts the sink of `kind` on a worker thread; the same TimingSink interface as in-thread. */
export async function threadSink(kind: Kind): Promise<TimingSink> {
  // The thread loads this TypeScript file through tsx's API: on Node 20 a worker does not
  // inherit the `--import tsx` hooks of its parent.
  const boot = `const { register } = await import('tsx/esm/api'); register(); await import(${JSON.stringify(import.meta.url)});`;
  const worker = new Worker(boot, { eval: true, workerData: kind });
  const next = () => new Promise<Reply>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const ready = (await next()) as { env: Record<string, string> };
  let collected: ProviderStreamTiming[] = [];
  return {
    env: ready.env,
    streams: () => collected,
    async collect() {
      worker.postMessage('collect');
      const reply = (await next()) as { streams: { session: number; arrivals: BigInt64Array }[] };
      collected = reply.streams.map((s) => ({ session: s.session, arrivals: [...s.arrivals] }));
    },
    async close() {
      worker.postMessage('close');
      await next();
      await worker.terminate();
    },
  };
}

if (!isMainThread) {
  const sink = await (workerData as Kind === 'openai' ? openaiSink() : deepgramSink());
  parentPort!.postMessage({ env: sink.env } satisfies Reply);
  parentPort!.on('message', async (command: 'collect' | 'close') => {
    if (command === 'collect') {
      const streams = sink.streams().map((s) => ({ session: s.session, arrivals: BigInt64Array.from(s.arrivals) }));
      parentPort!.postMessage({ streams } satisfies Reply, streams.map((s) => s.arrivals.buffer));
    } else {
      await sink.close();
      parentPort!.postMessage({ closed: true } satisfies Reply);
    }
  });
}
