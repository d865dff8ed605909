/**
 * The dispatcher on Cloudflare Workers, through bindings rather than a URL, in priority
 * order: DISPATCHER_DO (a WebSocket to the dispatcher's Durable Object, one per session),
 * else TRANSCRIPTION_QUEUE (Queue `send`), else TRANSCRIPTION_DISPATCHER (service-binding
 * RPC `dispatch`). A final the higher transport fails to take goes to the next one.
 */
import type { DispatcherConfig } from '../../config.ts';
import type { Logger } from '../../log.ts';
import type { Metrics } from '../../metrics.ts';
import { ConnectError, type SocketConnector } from '../../net.ts';
import type { SinkFactory } from '../../session/ports.ts';
import { FallbackTransport } from '../../sinks/dispatcher/fallback.ts';
import type { DispatcherMessage } from '../../sinks/dispatcher/message.ts';
import type { Outgoing } from '../../sinks/dispatcher/queue.ts';
import { DispatcherSink } from '../../sinks/dispatcher/sink.ts';
import type { DispatchTransport, HandBack } from '../../sinks/dispatcher/transport.ts';
import { sessionUrl, WebSocketTransport } from '../../sinks/dispatcher/websocket.ts';
import { withDeadline, type Timers } from '../../util/timers.ts';
import { acceptWebSocket } from './connector.ts';

export interface QueueLike {
  send(message: DispatcherMessage): Promise<unknown>;
}

/** What the dispatcher's `dispatch` RPC answers; `success: false` means "try again". */
export interface DispatchResult {
  success: boolean;
  dispatched: number;
  errors?: unknown[];
  message?: string;
}

export interface DispatcherServiceLike {
  dispatch(message: DispatcherMessage): Promise<DispatchResult>;
}

export interface CloudflareDispatcherBindings {
  DISPATCHER_DO?: DurableObjectNamespace;
  TRANSCRIPTION_QUEUE?: QueueLike;
  TRANSCRIPTION_DISPATCHER?: DispatcherServiceLike;
}

export interface CloudflareDispatcherDeps {
  bindings: CloudflareDispatcherBindings;
  config: DispatcherConfig;
  log: Logger;
  metrics: Metrics;
  timers: Timers;
  /** The request's `ctx.waitUntil`: the drain outlives the client socket. */
  waitUntil?: (promise: Promise<unknown>) => void;
}

/** The Durable Object's URL; only the Object sees it, the host is a placeholder. */
const DO_URL = 'https://dispatcher.do/websocket';

/** Opens WebSockets to the session's dispatcher Durable Object (`idFromName(sessionId)`). */
function durableObjectConnector(namespace: DurableObjectNamespace, sessionId: string, timers: Timers): SocketConnector {
  return {
    supportsHeaders: true,
    async connect(url, options, handlers) {
      const stub = namespace.get(namespace.idFromName(sessionId));
      const upgrade = stub.fetch(url, { headers: { ...options.headers, Upgrade: 'websocket' } });
      const response = await withDeadline(upgrade, options.timeoutMs ?? 10_000, timers, () => {
        throw new ConnectError('the dispatcher Durable Object did not answer in time');
      });
      const ws = response.webSocket;
      if (response.status !== 101 || !ws) {
        throw new ConnectError(`the dispatcher Durable Object refused the WebSocket with HTTP ${response.status}`, response.status);
      }
      return acceptWebSocket(ws, handlers);
    },
  };
}

abstract class BindingTransport implements DispatchTransport {
  abstract readonly name: string;
  constructor(
    protected readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  async send(item: Outgoing): Promise<void> {
    try {
      await this.hand(item.message);
    } catch (error) {
      this.metrics.dispatcherErrors.inc({ transport: this.name });
      throw error;
    }
    this.metrics.dispatcherDelivered.inc({ transport: this.name });
  }

  async close(): Promise<void> {}

  protected abstract hand(message: DispatcherMessage): Promise<void>;
}

class QueueTransport extends BindingTransport {
  readonly name = 'queue';
  constructor(private readonly queue: QueueLike, log: Logger, metrics: Metrics) {
    super(log, metrics);
  }

  protected async hand(message: DispatcherMessage): Promise<void> {
    try {
      await this.queue.send(message);
    } catch (error) {
      this.log.warn('Queue send failed', { messageId: message.messageId, error: describe(error) });
      throw error;
    }
  }
}

class RpcTransport extends BindingTransport {
  readonly name = 'rpc';
  constructor(private readonly service: DispatcherServiceLike, log: Logger, metrics: Metrics) {
    super(log, metrics);
  }

  protected async hand(message: DispatcherMessage): Promise<void> {
    let result: DispatchResult;
    try {
      result = await this.service.dispatch(message);
    } catch (error) {
      this.log.warn('Dispatcher RPC failed', { messageId: message.messageId, error: describe(error) });
      throw error;
    }
    if (!result?.success) {
      const detail = result?.message ?? (result?.errors === undefined ? 'success: false' : describe(result.errors));
      this.log.warn('Dispatcher RPC failed', { messageId: message.messageId, error: detail });
      throw new Error(`dispatcher RPC answered success: false (${detail})`);
    }
  }
}

/** The session's transports in priority order, from the bindings that exist. */
function cloudflareTransports(deps: CloudflareDispatcherDeps, sessionId: string, handBack: HandBack, log: Logger): DispatchTransport[] {
  const { bindings, config, metrics, timers } = deps;
  const transports: DispatchTransport[] = [];
  if (typeof bindings.DISPATCHER_DO?.idFromName === 'function') {
    transports.push(
      new WebSocketTransport({
        name: 'durable_object',
        url: sessionUrl(DO_URL, sessionId),
        headers: config.headers,
        connector: durableObjectConnector(bindings.DISPATCHER_DO, sessionId, timers),
        connectTimeoutMs: config.connectTimeoutMs,
        recycleMs: config.reconnectIntervalMs,
        connectedLine: 'Connected to Dispatcher DO via WebSocket',
        log,
        metrics,
        timers,
        handBack,
      }),
    );
  }
  if (typeof bindings.TRANSCRIPTION_QUEUE?.send === 'function') transports.push(new QueueTransport(bindings.TRANSCRIPTION_QUEUE, log, metrics));
  if (typeof bindings.TRANSCRIPTION_DISPATCHER?.dispatch === 'function') {
    transports.push(new RpcTransport(bindings.TRANSCRIPTION_DISPATCHER, log, metrics));
  }
  return transports;
}

/** Whether any dispatcher binding exists. */
export function hasDispatcherBinding(bindings: CloudflareDispatcherBindings): boolean {
  return Boolean(bindings.DISPATCHER_DO ?? bindings.TRANSCRIPTION_QUEUE ?? bindings.TRANSCRIPTION_DISPATCHER);
}

/** A dispatcher sink for one session, or undefined when no binding is configured. */
export function createCloudflareDispatcherSink(deps: CloudflareDispatcherDeps, sessionId: string): DispatcherSink | undefined {
  if (!hasDispatcherBinding(deps.bindings)) return undefined;
  const log = deps.log.child({ session: sessionId });
  return new DispatcherSink({
    sessionId,
    limits: { maxCount: deps.config.queueLimit, maxBytes: deps.config.queueMaxBytes },
    drainTimeoutMs: deps.config.drainTimeoutMs,
    log,
    metrics: deps.metrics,
    timers: deps.timers,
    waitUntil: deps.waitUntil,
    transport: (handBack) => {
      const transports = cloudflareTransports(deps, sessionId, handBack, log);
      return transports.length === 1 ? transports[0]! : new FallbackTransport(transports, deps.timers, log);
    },
  });
}

/** For `AppDeps.sinks` in the Worker: the dispatcher sink of each session that wants one. */
export function cloudflareDispatcherSinks(deps: CloudflareDispatcherDeps): SinkFactory {
  return (session) => {
    if (!session.useDispatcher) return [];
    if (!hasDispatcherBinding(deps.bindings)) {
      deps.log.warn('dispatcher requested but no DISPATCHER_DO, TRANSCRIPTION_QUEUE or TRANSCRIPTION_DISPATCHER binding exists');
      return [];
    }
    if (session.sessionId === undefined) {
      deps.log.warn('dispatcher requested without a sessionId; finals are not dispatched');
      return [];
    }
    const sink = createCloudflareDispatcherSink(deps, session.sessionId);
    return sink ? [sink] : [];
  };
}

function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : typeof error === 'string' ? error : JSON.stringify(error);
  return (text ?? String(error)).slice(0, 300);
}
