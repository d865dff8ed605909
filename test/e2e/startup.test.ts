/**
 * The server entries as an operator runs them (`npm start`, `deno task dev`), each in a child
 * process: start-up failures are one line and exit 1; `.env` in the working directory is
 * read, loses to the real environment, and its secrets are never printed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DENO } from '../runtimes/deno-process.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = import.meta.resolve('tsx');

const ENTRIES = {
  node: [process.execPath, '--import', TSX, join(ROOT, 'src/runtime/node.ts')],
  deno: [DENO, 'run', '-A', '--config', join(ROOT, 'deno.json'), join(ROOT, 'src/runtime/deno.ts')],
} as const;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs an entry in `cwd` until it exits, or until it logs `listening` (then SIGTERM, and the
 * exit that follows).
 */
function run(entry: keyof typeof ENTRIES, env: Record<string, string>, cwd: string): Promise<Run> {
  const [command, ...args] = ENTRIES[entry];
  const child = spawn(command, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => {
    out.stdout += d.toString();
    if (!child.killed && out.stdout.includes('"msg":"listening"')) child.kill('SIGTERM');
  });
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, ...out })));
}

let busy: Server;
let busyPort: number;
let cwd: string;
beforeAll(async () => {
  busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  busyPort = (busy.address() as { port: number }).port;
  cwd = mkdtempSync(join(tmpdir(), 'startup-'));
});
afterAll(() => {
  busy.close();
  rmSync(cwd, { recursive: true, force: true });
});

describe.each(['node', 'deno'] as const)('%s entry', (entry) => {
  it('a busy port is one line naming PORT, exit 1', async () => {
    const result = await run(entry, { OPENAI_API_KEY: 'sk-x', HOST: '127.0.0.1', PORT: String(busyPort) }, cwd);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      `cannot listen on 127.0.0.1:${busyPort}: the port is in use (set PORT to a free port, or PORT=0 for any)`,
    ]);
  });

  it('a host that does not resolve is one line naming HOST, exit 1', async () => {
    const result = await run(entry, { OPENAI_API_KEY: 'sk-x', HOST: 'no-such-host.invalid', PORT: '0' }, cwd);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      'cannot listen on no-such-host.invalid:0: the host name does not resolve (set HOST to an address of this machine)',
    ]);
  });

  it('reads .env from the working directory, the environment wins, and the key is never printed', async () => {
    const dir = mkdtempSync(join(cwd, `${entry}-`));
    const secret = 'sk-from-dotenv-0123456789';
    writeFileSync(join(dir, '.env'), `# keys for local runs\nOPENAI_API_KEY=${secret}\nHOST=127.0.0.1\nLOG_LEVEL=shout\n`);

    // LOG_LEVEL comes from .env unless the environment sets it.
    const refused = await run(entry, { PORT: '0' }, dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('LOG_LEVEL: must be debug, info, warn or error');

    const started = await run(entry, { PORT: '0', LOG_LEVEL: 'info' }, dir);
    expect(started.code).toBe(0);
    const listening = started.stdout.split('\n').find((line) => line.includes('"msg":"listening"'));
    expect(JSON.parse(listening!)).toMatchObject({ host: '127.0.0.1', providers: ['openai', 'local'] });
    expect(started.stdout + started.stderr).not.toContain(secret);
    expect(refused.stdout + refused.stderr).not.toContain(secret);
  });
});
