/**
 * Runs a timing sink (bench/sinks.ts) on its own thread, so that arrivals are stamped by an
 * event loop the load generator never blocks: on the generator's thread, a frame that
 * arrives while 10,000 others are being sent would be stamped late, and the delay it shows
 * would be the generator's, not the server's.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { deepgramSink, openaiSink, type ProviderStreamTiming, type SinkCounts, type SinkOptions, type TimingSink } from './sinks.ts';

type Kind = 'openai' | 'deepgram';
type Reply =
  | { env: Record<string, string> }
  | { streams: { session: number; arrivals: BigInt64Array }[] }
  | { counts: SinkCounts }
  | { closed: true };
type Command = 'collect' | 'counts' | 'close';

/** Starts the sink of `kind` on a worker thread; the same TimingSink interface as in-thread. */
export async function threadSink(kind: Kind, options: SinkOptions = {}): Promise<TimingSink> {
  // The thread loads this TypeScript file through tsx's API: on Node 20 a worker does not
  // inherit the `--import tsx` hooks of its parent.
  const boot = `const { register } = await import('tsx/esm/api'); register(); await import(${JSON.stringify(import.meta.url)});`;
  const worker = new Worker(boot, { eval: true, workerData: { kind, options } });
  const next = () =>
    new Promise<Reply>((resolve, reject) => {
      // Each listener removes the other: a long run asks many times.
      const onMessage = (reply: Reply) => {
        worker.off('error', onError);
        resolve(reply);
      };
      const onError = (error: Error) => {
        worker.off('message', onMessage);
        reject(error);
      };
      worker.once('message', onMessage);
      worker.once('error', onError);
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
    async counts() {
      worker.postMessage('counts');
      return ((await next()) as { counts: SinkCounts }).counts;
    },
    async close() {
      worker.postMessage('close');
      await next();
      await worker.terminate();
    },
  };
}

if (!isMainThread) {
  const { kind, options } = workerData as { kind: Kind; options: SinkOptions };
  const sink = await (kind === 'openai' ? openaiSink(options) : deepgramSink(options));
  parentPort!.postMessage({ env: sink.env } satisfies Reply);
  parentPort!.on('message', async (command: Command) => {
    if (command === 'counts') {
      parentPort!.postMessage({ counts: await sink.counts() } satisfies Reply);
    } else if (command === 'collect') {
      const streams = sink.streams().map((s) => ({ session: s.session, arrivals: BigInt64Array.from(s.arrivals) }));
      parentPort!.postMessage({ streams } satisfies Reply, streams.map((s) => s.arrivals.buffer));
    } else {
      await sink.close();
      parentPort!.postMessage({ closed: true } satisfies Reply);
    }
  });
}
