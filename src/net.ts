/**
 * The outbound-socket seam. Each runtime opens WebSockets with auth headers differently
 * (Node: the `ws` package; Deno: the WebSocket constructor's headers option; workerd:
 * fetch with `Upgrade: websocket`), so the core only sees this interface.
 */
export interface OutboundSocket {
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** Bytes queued but not yet written; 0 where the runtime cannot tell (workerd). */
  readonly bufferedAmount: number;
}

export interface SocketHandlers {
  message(data: string | Uint8Array): void;
  /** The socket closed (after open). Errors surface here too, as code 1006. */
  close(code: number, reason: string): void;
}

export interface ConnectOptions {
  headers?: Record<string, string>;
  protocols?: string[];
  /** Give up on the handshake after this long. */
  timeoutMs?: number;
}

export interface SocketConnector {
  /** Whether `headers` reach the server; otherwise callers authenticate by other means. */
  readonly supportsHeaders: boolean;
  /**
   * Resolves once the socket is open. Handlers are attached before the handshake completes,
   * so a message the server sends right after it is never missed.
   */
  connect(url: string, options: ConnectOptions, handlers: SocketHandlers): Promise<OutboundSocket>;
}

/** What a server said when it refused the upgrade, where the runtime exposes it. */
export interface HandshakeRefusal {
  /** Response headers, lower-cased names (providers explain refusals in e.g. `dg-error`). */
  headers: Record<string, string>;
  /** The start of the response body. */
  body: string;
}

/** The handshake failed: refused with an HTTP status, timed out, or the network failed. */
export class ConnectError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly refusal?: HandshakeRefusal,
  ) {
    super(message);
    this.name = 'ConnectError';
  }
}

/** Maps an http(s) URL to ws(s), as operators often paste a service's REST URL. */
export function toWebSocketScheme(url: string): string {
  return url.replace(/^http(s?):\/\//i, 'ws$1://');
}

/** A provider's base URL as ws(s), without a trailing slash, for a path to be appended. */
export function toWebSocketUrl(base: string): string {
  return toWebSocketScheme(base).replace(/\/+$/, '');
}
