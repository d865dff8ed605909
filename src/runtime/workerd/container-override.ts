/**
 * CONTAINER_URL_OVERRIDE: a stand-in for workerd's `ctx.container` that reaches a server at
 * a URL (a Node server on 127.0.0.1) instead of a container. The Container class runs
 * unchanged on top of it: start, readiness polling, WebSocket proxying, the activity timer
 * and its alarms, the stop when idle. Only how the container's port is reached differs, so
 * `wrangler dev` without Docker and the tests exercise the production code paths.
 */

/** The runtime's own wording, which the Container class looks for while a server starts. */
const NOT_LISTENING = 'the container is not listening';

/** The part of workerd's Container interface that the Container class uses. */
class UrlContainer {
  private live = false;
  private exited: (() => void) | undefined;
  private exit: Promise<void> = Promise.resolve();
  private readonly sockets = new Set<WebSocket>();

  constructor(private readonly origin: URL) {}

  get running(): boolean {
    return this.live;
  }

  /** The environment is not applied: the server at the URL was started with its own. */
  start(_options?: ContainerStartupOptions): void {
    this.live = true;
    this.exit = new Promise((resolve) => (this.exited = resolve));
  }

  monitor(): Promise<void> {
    return this.exit;
  }

  signal(_signo: number): void {
    this.stop();
  }

  async destroy(): Promise<void> {
    this.stop();
  }

  async setInactivityTimeout(_durationMs: number | bigint): Promise<void> {}

  getTcpPort(_port: number): { fetch: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response> } {
    return { fetch: (input, init) => this.fetch(input, init) };
  }

  private async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const requested = new URL(input instanceof Request ? input.url : String(input));
    const target = new URL(requested.pathname + requested.search, this.origin);
    let response: Response;
    try {
      response = await fetch(target, init);
    } catch (error) {
      throw new Error(`${NOT_LISTENING}: ${error instanceof Error ? error.message : String(error)}`);
    }
    const ws = response.webSocket;
    if (ws) {
      this.sockets.add(ws);
      ws.addEventListener('close', () => this.sockets.delete(ws));
    }
    return response;
  }

  /** What a stopped container's server does to its sockets: they close. */
  private stop(): void {
    if (!this.live) return;
    this.live = false;
    for (const ws of this.sockets) {
      try {
        ws.close(1001, 'container stopped');
      } catch {
        // Already closing.
      }
    }
    this.sockets.clear();
    this.exited?.();
  }
}

/**
 * Makes `ctx.container` reach `url` (its origin) for this Durable Object. Called before the
 * Container class's constructor, which reads it.
 */
export function installContainerOverride(ctx: DurableObjectState, url: string): void {
  const standIn = new UrlContainer(new URL(new URL(url).origin));
  // Structural stand-in for the runtime's object; the methods the Container class calls are all above.
  Object.defineProperty(ctx, 'container', { value: standIn as unknown as Container, configurable: true });
}
