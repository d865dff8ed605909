/**
 * The runtime's real outbound-socket seam (Node's `ws`, to the fakes on 127.0.0.1), with
 * every connection attempt recorded as it is made: when (on the test clock), with which
 * options, what was written on it, and how it ended. The product calls `connect` and
 * `send` synchronously from its timers, so a test can tell at once, right after moving
 * the clock, whether a retry was made or a commit written, without waiting on the network.
 */
import type { ConnectOptions, OutboundSocket, SocketConnector, SocketHandlers } from '../../src/net.ts';
import { nodeConnector } from '../../src/runtime/node/connector.ts';
import type { Timers } from '../../src/util/timers.ts';
import { settle } from './clock.ts';

export interface Attempt {
  url: string;
  options: ConnectOptions;
  /** The test clock's time when the attempt was made. */
  at: number;
  outcome: 'pending' | 'open' | 'failed';
  error?: unknown;
  /** Frames written, in order (text frames as strings). */
  sent: (string | Uint8Array)[];
  /** Frames received, in order, each recorded just before the product handled it. */
  received: (string | Uint8Array)[];
  /** Closed after opening, by either side. */
  closed?: { code: number; reason: string };
  /** Settles with the attempt (never rejects). */
  done: Promise<void>;
}

export class RecordingConnector implements SocketConnector {
  readonly supportsHeaders: boolean;
  readonly attempts: Attempt[] = [];

  constructor(
    private readonly clock: Pick<Timers, 'now'>,
    private readonly inner: SocketConnector = nodeConnector,
  ) {
    this.supportsHeaders = inner.supportsHeaders;
  }

  connect(url: string, options: ConnectOptions, handlers: SocketHandlers): Promise<OutboundSocket> {
    const attempt: Attempt = { url, options, at: this.clock.now(), outcome: 'pending', sent: [], received: [], done: Promise.resolve() };
    this.attempts.push(attempt);
    const opened = this.inner
      .connect(url, options, {
        message: (data) => {
          attempt.received.push(data);
          handlers.message(data);
        },
        close: (code, reason) => {
          attempt.closed = { code, reason };
          handlers.close(code, reason);
        },
      })
      .then(
        (socket): OutboundSocket => {
          attempt.outcome = 'open';
          return {
            send: (data) => {
              attempt.sent.push(data);
              socket.send(data);
            },
            close: (code, reason) => socket.close(code, reason),
            get bufferedAmount() {
              return socket.bufferedAmount;
            },
          };
        },
        (error: unknown) => {
          attempt.outcome = 'failed';
          attempt.error = error;
          throw error;
        },
      );
    attempt.done = opened.then(
      () => undefined,
      () => undefined,
    );
    return opened;
  }

  /** Text frames written on attempt `i` that parse as JSON objects with this `type`. */
  sentOfType(i: number, type: string): Record<string, unknown>[] {
    return (this.attempts[i]?.sent ?? [])
      .filter((d): d is string => typeof d === 'string')
      .map((d) => JSON.parse(d) as Record<string, unknown>)
      .filter((m) => m.type === type);
  }

  /** Text frames received on attempt `i` that parse as JSON objects with this `type`. */
  receivedOfType(i: number, type: string): Record<string, unknown>[] {
    return (this.attempts[i]?.received ?? [])
      .filter((d): d is string => typeof d === 'string')
      .map((d) => JSON.parse(d) as Record<string, unknown>)
      .filter((m) => m.type === type);
  }

  /** Resolves once every attempt made so far has opened or failed, and the product has reacted. */
  async settled(): Promise<void> {
    // An attempt may be about to start in a promise continuation (a pump, a lock).
    await settle();
    await Promise.all(this.attempts.map((a) => a.done));
    await settle();
  }
}
