import * as v from 'valibot';
import { LOCAL_SAMPLE_RATE, RecognizerRefusal, type LocalRecognizer, type RecognizerStream } from '../local/engine.ts';
import { envBool, envNumber, parseEnvWith } from '../util/env-schema.ts';
import { withDeadline } from '../util/timers.ts';
import { ProviderError, type ConnectionListener, type Provider, type ProviderConnection, type ProviderDeps, type ProviderModule } from './provider.ts';

/**
 * `local`: speech recognised in this process, with no network and no key (CMU PocketSphinx,
 * US English, in a worker the runtime runs: src/local/). The runtime injects the recogniser
 * (ProviderDeps.localRecognizer); a runtime without one (the Cloudflare Worker) does not list
 * this provider.
 */

const Env = v.object({
  LOCAL_PROVIDER: envBool(true),
  LOCAL_MAX_LAG_SECONDS: envNumber(60, 1, 600),
});

export interface LocalConfig {
  /** Audio a stream's recogniser may be behind real time before new audio is refused. */
  maxLagMs: number;
}

class LocalConnection implements ProviderConnection {
  private stream!: RecognizerStream;
  private utterance = 0;
  private closed = false;
  /** A lag episode has been reported; cleared once the recogniser catches up. */
  private lagging = false;
  private flushes: (() => void)[] = [];

  constructor(
    private readonly config: LocalConfig,
    private readonly deps: ProviderDeps,
    private readonly listener: ConnectionListener,
  ) {}

  async open(recognizer: LocalRecognizer): Promise<void> {
    this.stream = await recognizer.open({
      hypothesis: (text, final, endMs) => {
        if (this.closed) return;
        const itemId = `local-${this.utterance}`;
        if (final) this.utterance++;
        this.listener.transcript({ kind: final ? 'final' : 'interim', itemId, text, ...(final ? { audioEndMs: endMs } : {}) });
      },
      flushed: () => this.flushes.shift()?.(),
      failed: (message) => {
        if (this.closed) return;
        this.closed = true;
        for (const done of this.flushes.splice(0)) done();
        this.listener.closed(new ProviderError(`the local recogniser failed: ${message}`, 'closed'));
      },
    });
  }

  send(audio: Uint8Array): void {
    if (this.closed) return;
    // A recogniser that cannot keep up (too many streams for the CPU) refuses audio rather
    // than queueing it without bound: the stream's text degrades, the server stays responsive.
    if (this.stream.pendingMs > this.config.maxLagMs) {
      if (!this.lagging) {
        this.lagging = true;
        this.listener.error(
          new ProviderError(
            `the local recogniser is more than ${this.config.maxLagMs / 1000} s behind real time (LOCAL_MAX_LAG_SECONDS): audio is dropped until it catches up`,
            'rate_limited',
          ),
        );
      }
      return;
    }
    this.lagging = false;
    this.stream.write(audio);
  }

  flush(): void {
    if (this.closed) return;
    this.stream.endUtterance();
    this.flushes.push(() => {});
  }

  async finish(timeoutMs: number): Promise<void> {
    if (!this.closed) {
      let finished = false;
      const done = new Promise<void>((resolve) => {
        this.stream.endUtterance();
        this.flushes.push(resolve);
      }).then(() => (finished = true));
      // A recogniser still getting through its backlog is work under way, not a provider that
      // stopped answering: the wait goes on while it makes progress (bounded by
      // LOCAL_MAX_LAG_SECONDS of backlog), and ends `timeoutMs` after it last did.
      let pending = Infinity;
      while (!finished && !this.closed && this.stream.pendingMs < pending) {
        pending = this.stream.pendingMs;
        await withDeadline(done, timeoutMs, this.deps.timers);
      }
    }
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.close();
  }
}

export function createLocal(config: LocalConfig, deps: ProviderDeps): Provider {
  return {
    name: 'local',
    formatFor: () => ({ kind: 'pcm16', sampleRate: LOCAL_SAMPLE_RATE }),
    async connect(_request, listener) {
      const recognizer = deps.localRecognizer;
      if (!recognizer) throw new ProviderError('the local recogniser is not available in this runtime', 'handshake', false);
      const conn = new LocalConnection(config, deps, listener);
      try {
        await conn.open(recognizer);
      } catch (error) {
        if (error instanceof RecognizerRefusal) throw new ProviderError(error.message, error.busy ? 'rate_limited' : 'handshake', error.busy);
        throw error;
      }
      return conn;
    },
  };
}

/** Switched on unless LOCAL_PROVIDER is false: it needs no key. */
export const local: ProviderModule = {
  name: 'local',
  keyVariable: 'LOCAL_PROVIDER',
  enableHint: 'LOCAL_PROVIDER=true',
  load(env) {
    const { output, errors } = parseEnvWith(Env, env);
    if (output === undefined || !output.LOCAL_PROVIDER) return { errors };
    const config: LocalConfig = { maxLagMs: Math.round(output.LOCAL_MAX_LAG_SECONDS * 1000) };
    return { errors, create: (deps) => createLocal(config, deps) };
  },
};
