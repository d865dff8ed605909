/**
 * The contracts between the app (routes), the session engines and the runtimes. Everything
 * below src/app.ts depends on these rather than on the app, so the app stays a leaf that
 * only runtime entries import.
 */
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { InfoMessage, TranscriptionResult } from '../protocol/outbound.ts';
import type { TranscribeParams } from '../protocol/query.ts';
import type { Timers } from '../util/timers.ts';
import type { SessionBacklog } from './backlog.ts';
import type { SilenceGateSettings } from './silence-gate.ts';
import type { UsageReport } from './usage.ts';

/** The media server's socket, as a session writes to it. */
export interface ClientSocket {
  send(text: string): void;
  close(code?: number, reason?: string): void;
  /**
   * Backpressure (docs/PROTOCOL.md §4.10): stop reading the client's frames until `resume()`.
   * Frames the runtime had already read may still arrive. Absent where the runtime's socket
   * cannot stop reading (Deno, workerd): the session's hard buffer bound applies alone there.
   */
  pause?(): void;
  resume?(): void;
}

/** A destination of a session's transcripts: the client socket, the dispatcher… */
export interface TranscriptSink {
  /** Whether finals must still be produced after the client socket has closed. */
  readonly outlivesClient: boolean;
  /** Must not block: a slow destination buffers on its own, never delaying the others. */
  deliver(result: TranscriptionResult): void;
  /** Session end, before `close`: what the session cost (the dispatcher forwards it). */
  usage?(report: UsageReport): void;
  /** Session end: flush what is pending (bounded), then release everything. */
  close(): Promise<void>;
}

/** What a sink factory knows of a session when it is opened. */
export interface SessionInfo {
  sessionId: string | undefined;
  /** The query parameter when given, else the environment's USE_DISPATCHER. */
  useDispatcher: boolean;
}

/** Sinks besides the client socket for one session, e.g. the dispatcher when it asks for it. */
export type SinkFactory = (session: SessionInfo) => TranscriptSink[];

/**
 * A record of one client socket's frames, both ways, in order (DUMP_DIR on Node): the session
 * as a replay or a mix can read it back (scripts/replay.ts, scripts/mix.ts).
 */
export interface SocketRecorder {
  received(frame: string): void;
  sent(frame: string): void;
  /** The socket closed: flush and release. */
  close(): void;
}

/** The recorder of a session's socket, or undefined when sessions are not recorded. */
export type RecorderFactory = (session: SessionInfo) => SocketRecorder | undefined;

/** The `info` fields the app knows; the session adds its provider and sessionId. */
export type InfoBase = Omit<InfoMessage, 'event' | 'provider' | 'sessionId'>;

/** The session behind one client socket, as the app drives it. */
export interface SessionHandle {
  /** Sends the first message on the socket. */
  info(base: InfoBase): void;
  handle(data: string | ArrayBuffer | Uint8Array): void;
  /** The client socket closed, with this code (1000: the client is done; others may come back). */
  close(code?: number): Promise<void>;
}

/**
 * Runs the sessions the app has validated and upgraded: here (decoder and providers in this
 * process), or relayed to a transcriber elsewhere (the Cloudflare Worker in front of its
 * container). Validation, refusals and routes stay the app's.
 */
export interface SessionFactory {
  /** The providers a session may name, in priority order: the first serves sessions that name none. */
  readonly providers: readonly string[];
  /** Why no session could be transcribed now, one line each (for /health); empty while one can. */
  problems(): string[];
  /** Before the upgrade, so that a failure is an HTTP error rather than a socket closed at once. */
  prepare(): Promise<void>;
  /**
   * Why no new session may open now for a client with `params`, one line naming the setting
   * (MAX_SESSIONS, MAX_EVENT_LOOP_LAG_MS, MAX_EVENT_LOOP_UTILIZATION), answered with 503 before the upgrade and counted
   * under `reason`; undefined while one may.
   */
  atCapacity?(params: TranscribeParams): { reason: 'max_sessions' | 'saturated'; message: string } | undefined;
  /**
   * `sinks` are the ones besides the client socket; the session owns what reaches `client`.
   * A factory that resumes sessions may hand back a detached one with the same sessionId
   * (docs/PROTOCOL.md §4.9); it then closes `sinks`, unused, and keeps the session's own.
   */
  open(params: TranscribeParams, client: ClientSocket, sinks: TranscriptSink[]): SessionHandle;
  /** Set once `drain` has begun: the app refuses new sessions and /health says `draining`. */
  readonly draining?: boolean;
  /**
   * Server shutdown (docs/PROTOCOL.md §6): every live session's participants are finished
   * (pending audio committed, finals awaited up to `timeoutMs`) while their clients are still
   * attached, so the finals reach the client and every sink; then each client is closed with
   * 1001 and the sinks are closed. Resolves once every session has ended.
   */
  drain?(timeoutMs: number): Promise<void>;
}

/** The operator's limits a session runs under (see Config). */
export interface SessionLimits {
  /** Silence after which a participant's utterance is flushed. */
  forceCommitMs: number;
  maxMessageBytes: number;
  /** Live participant streams per session (0: no limit). */
  maxParticipants: number;
  /** Live provider streams of the whole process, every session's together (0: no limit). */
  maxProviderConnections: number;
  /**
   * A participant's queue while its provider connects or backs off: reaching this much audio
   * pauses the client's socket (backpressure) rather than dropping any of it.
   */
  providerQueueMs: number;
  /** What all of one session's queues may hold together (bytes); beyond, the oldest audio is dropped. */
  maxSessionBufferBytes: number;
  /** Audio kept since the last final, replayed on a new connection when one dies (0: none). */
  providerReplayMs: number;
  /** At session end (or a stream's), how long in-flight utterances get to produce their finals. */
  finishTimeoutMs: number;
  /** PCM towards a provider is sent in messages of this much audio (ms); 0 or absent: one per frame. */
  pcmBatchMs?: number;
  /** Raw Opus towards a provider that takes Ogg goes as one Ogg page per this much audio (ms); 0 or absent: one packet per message. */
  passThroughBatchMs?: number;
  /** Only voice goes to PCM providers (absent: every frame). */
  silenceGate?: SilenceGateSettings;
}

/**
 * What every layer of a session needs from its surroundings, shared by reference from the
 * session factory down to each provider stream. Layers narrow only the log (`scoped`).
 */
export interface SessionContext {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly timers: Timers;
  readonly limits: SessionLimits;
  /** A message id unique within the process (a transcript's `message_id`). */
  newId(): string;
  /**
   * The session's audio held for its providers: the hard bound shared by its queues and the
   * backpressure on its client socket. Set by the session; a provider stream without one
   * (a test driving it alone) keeps its own.
   */
  readonly backlog?: SessionBacklog;
  /**
   * Why no new work may start now (the process is saturated: a clause naming the setting), or
   * undefined while it may: a new participant's stream is refused then, as a new session is.
   */
  saturated?(): string | undefined;
}

/** The same context, its log lines carrying `fields` too (session, tag…). */
export function scoped(ctx: SessionContext, fields: Record<string, unknown>): SessionContext {
  return { ...ctx, log: ctx.log.child(fields) };
}
