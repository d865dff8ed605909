/**
 * The synthetic monitor (issue 19.4): `npm run monitor` as a user runs it, against the real
 * Node server in front of the fake OpenAI, and the in-process schedule's metrics. The probe
 * streams samples/speech.ogg at its real pace (a few seconds), so these tests take real time;
 * the bounds are generous because two CPUs are shared by many test processes.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricValue, startProxy, type Proxy } from '../helpers/proxy.ts';
import { until } from '../helpers/wait.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TOKEN = 'monitor-test-shared-secret';

/** `npm run monitor -- ARGS`: its exit status and its output lines. */
function monitor(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/monitor.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}

describe('npm run monitor', () => {
  let proxy: Proxy;
  let url: string;
  beforeAll(async () => {
    proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5', AUTH_MODE: 'token', AUTH_TOKEN: TOKEN });
    url = `ws://127.0.0.1:${proxy.server.port}/transcribe`;
  });
  afterAll(() => proxy.close());

  it('exits 0 with one line once a final arrives, the token sent and never printed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'monitor-'));
    try {
      const prom = join(dir, 'monitor.prom');
      const run = await monitor(['--url', url, '--file', 'samples/speech.ogg', '--timeout-ms', '60000', '--prom-file', prom], { MONITOR_TOKEN: TOKEN });
      expect(run, run.stderr).toMatchObject({ code: 0, stdout: expect.stringMatching(/^OK final in \d+ ms: ".+"$/) });
      expect(run.stdout.split('\n')).toHaveLength(1);
      expect(run.stdout + run.stderr).not.toContain(TOKEN);
      expect(readFileSync(prom, 'utf8')).toContain('\ntranscriber_monitor_up 1\n');
      // It really streamed: a session of its own reached the provider.
      expect(proxy.logs.some((l) => l.msg === 'session opened' && String(l.session).startsWith('monitor-'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits 1 with the refusal when the proxy wants a token it was not given', async () => {
    const run = await monitor(['--url', url, '--timeout-ms', '60000']);
    expect(run).toMatchObject({
      code: 1,
      stdout: 'FAIL refused: refused with HTTP 401: unauthorized: no token (send Authorization: Bearer <token>, or ?token=<token> where headers cannot be set)',
    });
  });

  it('exits 1 when the finals lack the expected words within the bound', async () => {
    const run = await monitor(['--url', url, '--timeout-ms', '5000', '--expect', 'xylophone', '--token', TOKEN]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^FAIL timeout: (no final|finals without xylophone: ".*") within 5000 ms$/);
  });

  it('exits 1 when nothing listens, and 2 on a usage error', async () => {
    const closed = await monitor(['--url', 'ws://127.0.0.1:1/transcribe', '--timeout-ms', '5000']);
    expect(closed.code).toBe(1);
    expect(closed.stdout).toMatch(/^FAIL connect: cannot connect: /);
    const usage = await monitor(['--file', 'samples/speech.ogg']);
    expect(usage).toMatchObject({ code: 2, stdout: '', stderr: expect.stringMatching(/^--url is required\nusage: npm run monitor/) });
    const missing = await monitor(['--url', url, '--file', 'samples/none.ogg']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^samples\/none\.ogg: cannot read it/);
  });
});

describe('the in-process schedule (MONITOR_INTERVAL_S)', () => {
  it('probes its own /transcribe and exposes the outcome in /metrics', async () => {
    const proxy = await startProxy({
      FORCE_COMMIT_TIMEOUT: '0.5',
      AUTH_MODE: 'token',
      AUTH_TOKEN: TOKEN,
      MONITOR_INTERVAL_S: '1',
      MONITOR_FILE: 'samples/speech.ogg',
    });
    try {
      expect(metricValue(await proxy.metrics(), 'transcriber_monitor_last_success_timestamp_seconds')).toBe(0);
      await until(async () => metricValue(await proxy.metrics(), 'transcriber_monitor_probes_total', { result: 'ok' }) >= 1, 'a passing probe', 60_000);
      const text = await proxy.metrics();
      expect(metricValue(text, 'transcriber_monitor_up')).toBe(1);
      expect(metricValue(text, 'transcriber_monitor_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 120);
      // Its token (AUTH_TOKEN in token mode) got it in; nothing was refused.
      expect(metricValue(text, 'transcriber_auth_refused_total')).toBe(0);
    } finally {
      await proxy.close();
    }
  }, 90_000);

  it('counts a failing probe and says so in the log when the provider refuses', async () => {
    const proxy = await startProxy({ FORCE_COMMIT_TIMEOUT: '0.5', MONITOR_INTERVAL_S: '1', MONITOR_TIMEOUT_MS: '3000' });
    try {
      proxy.fake.faults = { refuseHandshake: 401 };
      await until(async () => metricValue(await proxy.metrics(), 'transcriber_monitor_probes_total', { result: 'timeout' }) >= 1, 'a failing probe', 60_000);
      expect(metricValue(await proxy.metrics(), 'transcriber_monitor_up')).toBe(0);
      const failed = proxy.logs.find((l) => l.msg === 'monitor probe failed');
      expect(failed).toMatchObject({ stage: 'timeout', reason: expect.stringMatching(/^no final within 3000 ms; last error provider_auth: /) });
    } finally {
      await proxy.close();
    }
  }, 90_000);

  it('refuses to start with a MONITOR_FILE it cannot read', async () => {
    await expect(startProxy({ MONITOR_INTERVAL_S: '5', MONITOR_FILE: 'samples/none.ogg' })).rejects.toMatchObject({
      errors: [expect.stringMatching(/^MONITOR_FILE: cannot read samples\/none\.ogg/)],
    });
  });
});
