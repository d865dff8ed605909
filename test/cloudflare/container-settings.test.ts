/**
 * What the Worker hands its containers: Cloudflare passes a container none of the Worker's
 * variables or secrets, so each one the server reads is forwarded explicitly, byte for byte.
 */
import { describe, expect, it } from 'vitest';
import { containerEnvVars, loadContainerSettings } from '../../src/runtime/workerd/container-settings.ts';

const WORKER_VARS = {
  OPENAI_API_KEY: 'sk-secret value with spaces',
  OPENAI_MODEL: 'gpt-4o-mini-transcribe',
  OPENAI_BASE_URL: 'https://openai.example/v1',
  DEEPGRAM_API_KEY: 'dg-secret',
  DEEPGRAM_MODEL: 'nova-3',
  GEMINI_API_KEY: 'gm-secret',
  VOSK_URL: 'ws://vosk.internal:2700',
  VOSK_SAMPLE_RATE: '8000',
  LOCAL_MAX_STREAMS: '4',
  PROVIDERS_PRIORITY: 'deepgram,openai',
  FORCE_COMMIT_TIMEOUT: '1.5',
  LOG_LEVEL: 'debug',
  FINISH_TIMEOUT_MS: '4000',
  USE_DISPATCHER: 'true',
  DISPATCHER_HEADERS: '{"Authorization":"Bearer d"}',
  CONTAINER_SLEEP_AFTER: '10m',
  CONTAINER_URL_OVERRIDE: 'http://127.0.0.1:9000',
  PORT: '1234',
  UNRELATED: 'x',
};

describe('containerEnvVars', () => {
  it("forwards the server's and the providers' variables unchanged, and nothing else", () => {
    expect(containerEnvVars(WORKER_VARS)).toEqual({
      OPENAI_API_KEY: 'sk-secret value with spaces',
      OPENAI_MODEL: 'gpt-4o-mini-transcribe',
      OPENAI_BASE_URL: 'https://openai.example/v1',
      DEEPGRAM_API_KEY: 'dg-secret',
      DEEPGRAM_MODEL: 'nova-3',
      GEMINI_API_KEY: 'gm-secret',
      VOSK_URL: 'ws://vosk.internal:2700',
      VOSK_SAMPLE_RATE: '8000',
      LOCAL_MAX_STREAMS: '4',
      PROVIDERS_PRIORITY: 'deepgram,openai',
      FORCE_COMMIT_TIMEOUT: '1.5',
      LOG_LEVEL: 'debug',
      FINISH_TIMEOUT_MS: '4000',
      // The container serves the Container class's port and never dispatches: the Worker does.
      PORT: '8080',
      HOST: '0.0.0.0',
      USE_DISPATCHER: 'false',
    });
  });

  it('leaves out empty variables', () => {
    expect(containerEnvVars({ OPENAI_MODEL: '' })).not.toHaveProperty('OPENAI_MODEL');
  });
});

describe('loadContainerSettings', () => {
  it('reads the idle time and renews well within it', () => {
    expect(loadContainerSettings({ CONTAINER_SLEEP_AFTER: '10m' }).settings).toEqual({
      sleepAfterSeconds: 600,
      keepAliveMs: 60_000,
      urlOverride: undefined,
      routing: { mode: 'session' },
    });
    expect(loadContainerSettings({ CONTAINER_SLEEP_AFTER: '2s' }).settings).toMatchObject({ sleepAfterSeconds: 2, keepAliveMs: 500 });
    expect(loadContainerSettings({}).settings).toMatchObject({ sleepAfterSeconds: 300 });
  });

  it('lists bad values by name', () => {
    expect(loadContainerSettings({ CONTAINER_SLEEP_AFTER: 'soon', CONTAINER_URL_OVERRIDE: 'ws://x' }).errors).toEqual([
      'CONTAINER_SLEEP_AFTER: must be a duration such as 90s, 5m or 1h',
      'CONTAINER_URL_OVERRIDE: must be an http:// or https:// URL, e.g. http://127.0.0.1:8080',
    ]);
  });

  it('reads the routing mode and its limits', () => {
    expect(loadContainerSettings({ ROUTING: 'pool', POOL_SIZE: '5' }).settings?.routing).toEqual({ mode: 'pool', size: 5 });
    expect(loadContainerSettings({ ROUTING: 'pool' }).settings?.routing).toEqual({ mode: 'pool', size: 3 });
    expect(
      loadContainerSettings({
        ROUTING: 'autoscale',
        AUTOSCALE_MAX_SESSIONS_PER_CONTAINER: '8',
        AUTOSCALE_MIN_WARM: '0',
        AUTOSCALE_MAX_CONTAINERS: '20',
        AUTOSCALE_IDLE_RETIRE_S: '60',
      }).settings?.routing,
    ).toEqual({ mode: 'autoscale', limits: { maxSessionsPerContainer: 8, minWarm: 0, maxContainers: 20, idleRetireMs: 60_000 } });
  });

  it('lists bad routing values by name', () => {
    expect(loadContainerSettings({ ROUTING: 'round-robin', POOL_SIZE: '0', AUTOSCALE_MAX_SESSIONS_PER_CONTAINER: 'many' }).errors).toEqual([
      'ROUTING: must be session, pool, autoscale',
      'POOL_SIZE: must be at least 1',
      'AUTOSCALE_MAX_SESSIONS_PER_CONTAINER: must be a whole number',
    ]);
    expect(loadContainerSettings({ ROUTING: 'autoscale', AUTOSCALE_MIN_WARM: '4', AUTOSCALE_MAX_CONTAINERS: '2' }).errors).toEqual([
      'AUTOSCALE_MIN_WARM: must be at most AUTOSCALE_MAX_CONTAINERS (2)',
    ]);
  });
});
