/**
 * The Cloudflare dispatcher transports (src/runtime/workerd/dispatcher.ts) under workerd,
 * against real bindings: this Worker holds the dispatcher's Durable Object (which accepts
 * the sink's WebSocket and records what arrives), the Queue's consumer (which records the
 * batches), and a driver that runs a sink through a scenario of steps in one request (a
 * WebSocket belongs to the request that opened it, as a session's sockets do in production).
 * The RPC dispatcher is an auxiliary Worker bound as TRANSCRIPTION_DISPATCHER.
 */
import { createLogger } from '../../../src/log.ts';
import { createMetrics } from '../../../src/metrics.ts';
import type { TranscriptionResult } from '../../../src/protocol/outbound.ts';
import { createCloudflareDispatcherSink, type CloudflareDispatcherBindings } from '../../../src/runtime/workerd/dispatcher.ts';
import { loadDispatcherConfig } from '../../../src/config.ts';
import type { DispatcherFinal as DispatcherMessage } from '../../../src/sinks/dispatcher/message.ts';
import { systemTimers } from '../../../src/util/timers.ts';
import type { ObjectRecords, Scenario, ScenarioReport } from '../dispatcher-scenario.ts';

interface Env {
  DISPATCHER_DO: DurableObjectNamespace;
  TRANSCRIPTION_QUEUE: Queue<DispatcherMessage>;
  TRANSCRIPTION_DISPATCHER: Fetcher & { dispatch(message: DispatcherMessage): Promise<{ success: boolean; dispatched: number }> };
}

/** The dispatcher's Durable Object, one per session (`idFromName(sessionId)`). */
export class DispatcherObject implements DurableObject {
  private readonly records: ObjectRecords = { messages: [], closes: [], connections: 0, refusals: 0 };
  private refusing = false;
  private readonly sockets = new Set<WebSocket>();

  async fetch(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (path === '/records') return Response.json(this.records);
    if (path === '/refuse') {
      this.refusing = true;
      return new Response('refusing');
    }
    if (path === '/accept') {
      this.refusing = false;
      return new Response('accepting');
    }
    if (path === '/drop') {
      for (const ws of this.sockets) ws.close(1011, 'dispatcher restarting');
      this.sockets.clear();
      return new Response('dropped');
    }
    if (request.headers.get('Upgrade') !== 'websocket') return new Response('WebSocket only', { status: 426 });
    if (this.refusing) {
      this.records.refusals++;
      return new Response('unavailable', { status: 503 });
    }
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    server.accept();
    this.records.connections++;
    this.sockets.add(server);
    server.addEventListener('message', (event) => {
      this.records.messages.push(JSON.parse(String(event.data)) as DispatcherMessage);
    });
    server.addEventListener('close', (event) => {
      this.records.closes.push(event.code);
      this.sockets.delete(server);
    });
    return new Response(null, { status: 101, webSocket: client });
  }
}

/** Finals that came through the Queue, as its consumer got them. */
const queued: DispatcherMessage[] = [];

function result(id: string, text: string, interim = false): TranscriptionResult {
  return {
    event: 'transcription-result',
    type: 'transcription-result',
    transcript: [{ text }],
    is_interim: interim,
    message_id: id,
    participant: { id: 'abc123', tag: 'abc123-a0' },
    timestamp: 1768341932350,
    language: 'en',
  };
}

async function objectRecords(env: Env, sessionId: string): Promise<ObjectRecords> {
  const stub = env.DISPATCHER_DO.get(env.DISPATCHER_DO.idFromName(sessionId));
  return (await stub.fetch('https://dispatcher.do/records')).json<ObjectRecords>();
}

async function run(scenario: Scenario, env: Env, ctx: ExecutionContext): Promise<ScenarioReport> {
  const logs: string[] = [];
  const metrics = createMetrics();
  const loaded = loadDispatcherConfig(scenario.env ?? {});
  if (!loaded.config) throw new Error(loaded.errors.join('; '));
  // workerd's own binding objects, checked against the sink's structural interfaces.
  const all: Required<CloudflareDispatcherBindings> = {
    DISPATCHER_DO: env.DISPATCHER_DO,
    TRANSCRIPTION_QUEUE: env.TRANSCRIPTION_QUEUE,
    TRANSCRIPTION_DISPATCHER: env.TRANSCRIPTION_DISPATCHER,
  };
  const bindings: CloudflareDispatcherBindings = {};
  for (const name of scenario.bindings) Object.assign(bindings, { [name]: all[name] });
  let waitUntil = 0;
  const sink = createCloudflareDispatcherSink(
    {
      bindings,
      config: loaded.config,
      log: createLogger('debug', (_level, line) => logs.push(line)),
      metrics,
      timers: systemTimers,
      waitUntil: (promise) => {
        waitUntil++;
        ctx.waitUntil(promise);
      },
    },
    scenario.sessionId,
  );
  if (!sink) throw new Error('no sink for these bindings');
  const stub = env.DISPATCHER_DO.get(env.DISPATCHER_DO.idFromName(scenario.sessionId));
  for (const step of scenario.steps) {
    if ('deliver' in step) sink.deliver(result(step.deliver.id, step.deliver.text, step.deliver.interim));
    else if ('object' in step) await stub.fetch(`https://dispatcher.do/${step.object}`);
    else if ('waitFor' in step) {
      const { messageId } = step.waitFor;
      for (let i = 0; ; i++) {
        const records = await objectRecords(env, scenario.sessionId);
        if (records.messages.some((m) => m.messageId === messageId)) break;
        if (i > 400) throw new Error(`${messageId} never reached the Durable Object`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    } else await sink.close();
  }
  return { logs, metrics: metrics.registry.render(), waitUntil };
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/run') return Response.json(await run(await request.json<Scenario>(), env, ctx));
    if (url.pathname === '/records') {
      const sessionId = url.searchParams.get('sessionId') ?? '';
      return Response.json({
        object: await objectRecords(env, sessionId),
        queue: queued.filter((m) => m.sessionId === sessionId),
      });
    }
    return new Response('not found', { status: 404 });
  },
  async queue(batch, _env) {
    for (const message of batch.messages) {
      queued.push(message.body);
      message.ack();
    }
  },
} satisfies ExportedHandler<Env, DispatcherMessage>;
