/**
 * Starts the Deno entry (src/runtime/deno.ts) as a child process on a free port, for tests
 * that talk to it over the network. The port comes from its `listening` JSON log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DENO = fileURLToPath(new URL('../../node_modules/.bin/deno', import.meta.url));

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface DenoProcess {
  readonly port: number;
  readonly child: ChildProcess;
  /** Every JSON log line so far (stdout and stderr). */
  readonly logs: LogLine[];
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * `env` is the server's whole environment; PORT=0 and HOST=127.0.0.1 unless given. The
 * server's lines are captured in `logs`, never printed, so there is no noise to turn down.
 */
export function startDenoProcess(env: Record<string, string>): Promise<DenoProcess> {
  if (env.LOG_LEVEL === 'warn' || env.LOG_LEVEL === 'error') {
    // It would never be found, and the launcher would wait forever.
    return Promise.reject(new Error(`LOG_LEVEL=${env.LOG_LEVEL} hides the info-level "listening" line that gives the port`));
  }
  const child = spawn(DENO, ['run', '--allow-net', '--allow-env', '--allow-read', 'src/runtime/deno.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const text: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  return new Promise((resolve, reject) => {
    const onLine = (line: string) => {
      text.push(line);
      let record: LogLine;
      try {
        record = JSON.parse(line) as LogLine;
      } catch {
        return; // Deno's own diagnostics
      }
      logs.push(record);
      if (record.msg === 'listening' && typeof record.port === 'number') {
        resolve({
          port: record.port,
          child,
          logs,
          async stop(signal = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    void exited.then((code) => reject(new Error(`deno exited (${code}) before listening:\n${text.join('\n')}`)));
  });
}
