/**
 * Docker has no engine here, so the image itself cannot be built in CI. Instead this test
 * reads the Dockerfile, lays out a directory with exactly what its COPY lines take from the
 * build context (after building dist/ like `npm run build`), and runs its CMD there with
 * production dependencies only: a file missing from the image fails here.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

/** The instructions, with line continuations joined. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line && !line.startsWith('#'));

const arg = (name: string) => instructions.filter((i) => i.startsWith(`${name} `)).map((i) => i.slice(name.length + 1));

describe('Dockerfile', () => {
  let app: string;

  beforeAll(() => {
    const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', join(ROOT, 'node_modules/.cache/docker-dist')], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(build.status, build.stdout + build.stderr).toBe(0);
    app = mkdtempSync(join(tmpdir(), 'image-'));
    for (const copy of arg('COPY')) {
      const parts = copy.split(/\s+/);
      const target = parts.pop()!;
      for (const source of parts) {
        // dist/ comes from the build above, the rest from the checkout.
        const from = source.replace(/\/$/, '') === 'dist' ? join(ROOT, 'node_modules/.cache/docker-dist') : join(ROOT, source);
        const to = target.endsWith('/') ? join(app, target, source.endsWith('/') ? '' : source.split('/').pop()!) : join(app, target);
        mkdirSync(dirname(to), { recursive: true });
        cpSync(from, to, { recursive: true });
      }
    }
    // Production dependencies only: what `npm install --omit=dev` installs.
    const prod = spawnSync('npm', ['ls', '--omit=dev', '--parseable', '--all'], { cwd: ROOT, encoding: 'utf8' });
    mkdirSync(join(app, 'node_modules'));
    for (const path of prod.stdout.split('\n').slice(1).filter(Boolean)) {
      const relative = path.slice(join(ROOT, 'node_modules').length + 1);
      if (relative.includes('/node_modules/')) continue;
      mkdirSync(dirname(join(app, 'node_modules', relative)), { recursive: true });
      symlinkSync(path, join(app, 'node_modules', relative));
    }
  });

  afterAll(() => rmSync(app, { recursive: true, force: true }));

  it('is a slim Node 22 LTS image that runs as a non-root user under an init', () => {
    expect(arg('FROM')[0]).toMatch(/^node:22-[a-z]+-slim$/);
    expect(arg('USER')).toEqual(['node']);
    expect(arg('ENTRYPOINT')[0]).toContain('tini');
    expect(arg('HEALTHCHECK')[0]).toContain('/health');
    expect(arg('RUN').join(' ')).toContain('--omit=dev');
  });

  it('serves /health and /transcribe from exactly what it copies, with production dependencies', async () => {
    const cmd = JSON.parse(arg('CMD')[0]!) as string[];
    expect(cmd[0]).toBe('node');
    const child = spawn(process.execPath, cmd.slice(1), {
      cwd: app,
      env: { PATH: process.env.PATH, NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', OPENAI_API_KEY: 'sk-docker-test' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const listening = /"msg":"listening".*?"port":(\d+)/.exec(out);
          if (listening) resolve(Number(listening[1]));
        });
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
      });
      const health = await fetch(`http://127.0.0.1:${port}/health`);
      expect(await health.json()).toMatchObject({ status: 'ok', runtime: 'node', providers: ['openai', 'local'] });
      // The WASM decoder loads before the first upgrade is accepted: `info` proves the path works.
      const client = await TestClient.connect(`ws://127.0.0.1:${port}/transcribe?sessionId=docker&sendBack=true`);
      await client.waitFor(() => client.messages.length > 0, 'info');
      expect(client.messages[0]).toMatchObject({ event: 'info', runtime: 'node', sessionId: 'docker' });
      client.send({ event: 'ping', id: 1 });
      await client.waitFor(() => client.messages.some((m) => m.event === 'pong'), 'pong');
      await client.close();
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
