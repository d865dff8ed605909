/**
 * Drives workerdConnector from inside workerd for tests. POST a JSON `Probe`: the worker
 * connects, sends each item once open, and answers a `ProbeResult` once `messages` messages
 * (and, with `awaitClose`, the close) have arrived, or with the ConnectError.
 */
import { ConnectError } from '../../../src/net.ts';
import { workerdConnector } from '../../../src/runtime/workerd/connector.ts';
import type { Probe, ProbeResult, Received } from '../workerd-probe.ts';

async function probe(p: Probe): Promise<ProbeResult> {
  const messages: Received[] = [];
  let closed: { code: number; reason: string } | undefined;
  let wake = () => {};
  const done = () => messages.length >= p.messages && (!p.awaitClose || closed !== undefined);
  const finished = new Promise<void>((resolve) => (wake = () => done() && resolve()));
  try {
    const socket = await workerdConnector.connect(
      p.url,
      { headers: p.headers, protocols: p.protocols, timeoutMs: p.timeoutMs },
      {
        message(data) {
          messages.push(typeof data === 'string' ? { text: data } : { bytes: [...data] });
          wake();
        },
        close(code, reason) {
          closed = { code, reason };
          wake();
        },
      },
    );
    for (const item of p.send ?? []) socket.send(typeof item === 'string' ? item : new Uint8Array(item));
    wake();
    await finished;
    return { ok: true, messages, ...(closed ? { closed } : {}) };
  } catch (error) {
    if (!(error instanceof ConnectError)) throw error;
    return {
      ok: false,
      error: error.name,
      message: error.message,
      ...(error.status === undefined ? {} : { status: error.status }),
      ...(error.refusal === undefined ? {} : { refusal: error.refusal }),
    };
  }
}

export default {
  async fetch(request) {
    return Response.json(await probe(await request.json<Probe>()));
  },
} satisfies ExportedHandler;
