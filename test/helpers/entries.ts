/**
 * The real server entries (`npm start`'s and Deno's), each in its own process on a free port,
 * for tests that send them signals: their JSON log lines collected, their exit code awaited.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startDenoProcess, type LogLine } from '../runtimes/deno-process.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A server entry in its own process. */
export interface Entry {
  readonly port: number;
  readonly logs: LogLine[];
  signal(signal: NodeJS.Signals): void;
  readonly exited: Promise<number | null>;
}

function startNode(env: Record<string, string>): Promise<Entry> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/runtime/node.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const logs: LogLine[] = [];
  const text: string[] = [];
  return new Promise((resolve, reject) => {
    const onLine = (line: string) => {
      text.push(line);
      let record: LogLine;
      try {
        record = JSON.parse(line) as LogLine;
      } catch {
        return;
      }
      logs.push(record);
      if (record.msg === 'listening' && typeof record.port === 'number') {
        resolve({ port: record.port, logs, exited, signal: (signal) => child.exitCode === null && child.kill(signal) });
      }
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    void exited.then((code) => reject(new Error(`node exited (${code}) before listening:\n${text.join('\n')}`)));
  });
}

async function startDeno(env: Record<string, string>): Promise<Entry> {
  const p = await startDenoProcess(env);
  const exited = new Promise<number | null>((resolve) => p.child.once('exit', (code) => resolve(code)));
  return { port: p.port, logs: p.logs, exited, signal: (signal) => p.child.exitCode === null && p.child.kill(signal) };
}

export const ENTRIES = { node: startNode, deno: startDeno };
