/**
 * One launcher per runtime: each starts the app as that runtime serves it (its own process
 * or workerd instance) with the given environment, and says where it listens.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { FakeOpenAI } from '../fakes/openai-realtime.ts';
import { startDenoProcess } from '../runtimes/deno-process.ts';
import { startWorker } from '../runtimes/workerd-harness.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface RunningApp {
  /** http://127.0.0.1:<port> */
  readonly origin: string;
  stop(): Promise<void>;
}

export interface Launcher {
  readonly runtime: 'node' | 'deno' | 'workerd';
  start(env: Record<string, string>): Promise<RunningApp>;
}

/** `npm start`'s entry, in its own Node process. */
const node: Launcher = {
  runtime: 'node',
  start(env) {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/runtime/node.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    return new Promise((resolve, reject) => {
      const output: string[] = [];
      const onLine = (line: string) => {
        output.push(line);
        const listening = /"msg":"listening".*"port":(\d+)/.exec(line);
        if (!listening) return;
        resolve({
          origin: `http://127.0.0.1:${listening[1]}`,
          async stop() {
            child.kill('SIGTERM');
            await exited;
          },
        });
      };
      createInterface({ input: child.stdout! }).on('line', onLine);
      createInterface({ input: child.stderr! }).on('line', onLine);
      void exited.then(() => reject(new Error(`node exited before listening:\n${output.join('\n')}`)));
    });
  },
};

/** `deno task start`'s entry, under real Deno. */
const deno: Launcher = {
  runtime: 'deno',
  async start(env) {
    const p = await startDenoProcess(env);
    return {
      origin: `http://127.0.0.1:${p.port}`,
      async stop() {
        await p.stop();
      },
    };
  },
};

/** The production Worker entry transcribing by itself (no container), under workerd. */
const workerd: Launcher = {
  runtime: 'workerd',
  async start(env) {
    const worker = await startWorker('src/runtime/workerd.ts', { vars: { TRANSCRIBE_IN_WORKER: 'true', ...env } });
    return {
      origin: worker.url.origin,
      stop: () => worker.dispose(),
    };
  },
};

export const LAUNCHERS: readonly Launcher[] = [node, deno, workerd];

/**
 * For a suite of one runtime: a fake OpenAI and `start`'s app in front of it with `env` (plus
 * the fake's key and URL, and LOG_LEVEL=info, whose 'listening' line the launchers read the
 * port from), started before the suite and stopped after it.
 */
export function appBehindFakeOpenAI(
  start: Launcher['start'],
  /** A function where a value is known only once the suite's hooks have run (a server's URL). */
  env: Record<string, string> | (() => Record<string, string>),
): { readonly fake: FakeOpenAI; readonly app: RunningApp } {
  let fake: FakeOpenAI | undefined;
  let app: RunningApp | undefined;
  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    app = await start({ OPENAI_API_KEY: fake.apiKey, OPENAI_BASE_URL: fake.baseUrl, LOG_LEVEL: 'info', ...(typeof env === 'function' ? env() : env) });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });
  return {
    get fake() {
      return fake!;
    },
    get app() {
      return app!;
    },
  };
}
