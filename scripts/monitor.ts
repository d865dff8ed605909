/**
 * The synthetic monitor: opens a session against a running proxy, streams a known file at
 * its pace, and checks that a final arrives within a bound. One line on stdout, and the exit
 * status: 0 a final in time, 1 the check failed (refused, unreachable, no final in time, the
 * expected words missing), 2 a usage error (bad arguments, unreadable file).
 *
 *   npm run monitor -- --url ws://host:8080/transcribe [--file samples/speech.ogg]
 *     [--timeout-ms 30000] [--expect 'word word'] [--token T] [--prom-file PATH]
 *
 * The token (also MONITOR_TOKEN) is sent as `Authorization: Bearer`; it is never printed.
 * --prom-file writes the outcome in Prometheus text (node_exporter's textfile collector).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { audioFrames } from '../src/monitor/frames.ts';
import { probe } from '../src/monitor/probe.ts';
import { nodeConnector } from '../src/runtime/node/connector.ts';
import { systemTimers } from '../src/util/timers.ts';

const USAGE =
  'usage: npm run monitor -- --url ws://host:port/transcribe[?sessionId=…] [--file samples/speech.ogg] [--timeout-ms 30000] [--expect "words"] [--token T] [--prom-file PATH]';

function usageError(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      url: { type: 'string' },
      file: { type: 'string', default: 'samples/speech.ogg' },
      'timeout-ms': { type: 'string', default: '30000' },
      expect: { type: 'string' },
      token: { type: 'string' },
      'prom-file': { type: 'string' },
    },
    allowPositionals: false,
  }).values;
} catch (error) {
  usageError((error as Error).message);
}

const url = args.url ?? usageError('--url is required');
try {
  const scheme = new URL(url).protocol;
  if (scheme !== 'ws:' && scheme !== 'wss:') usageError(`--url must start with ws:// or wss:// (got ${scheme})`);
} catch {
  usageError(`--url is not a URL: ${url}`);
}
const timeoutMs = Number(args['timeout-ms']);
if (!Number.isInteger(timeoutMs) || timeoutMs < 1) usageError('--timeout-ms must be a whole number of milliseconds');

let bytes: Uint8Array;
try {
  bytes = readFileSync(args.file);
} catch (error) {
  usageError(`${args.file}: cannot read it (${(error as Error).message})`);
}
const frames = audioFrames(bytes, args.file, 'monitor-0');
if (!frames.ok) usageError(frames.reason);

const token = args.token ?? process.env.MONITOR_TOKEN;
const target = new URL(url);
if (!target.searchParams.has('sessionId')) target.searchParams.set('sessionId', `monitor-${Date.now()}`);
const result = await probe({
  url: target.toString(),
  frames: frames.frames,
  timeoutMs,
  expect: args.expect?.split(/[\s,]+/).filter(Boolean),
  headers: token ? { Authorization: `Bearer ${token}` } : undefined,
  connector: nodeConnector,
  timers: systemTimers,
});

if (args['prom-file']) {
  const path = args['prom-file'];
  const now = Date.now() / 1000;
  const text = [
    '# HELP transcriber_monitor_up Whether the synthetic probe got its final in time',
    '# TYPE transcriber_monitor_up gauge',
    `transcriber_monitor_up ${result.ok ? 1 : 0}`,
    '# HELP transcriber_monitor_last_run_timestamp_seconds When the probe last ran',
    '# TYPE transcriber_monitor_last_run_timestamp_seconds gauge',
    `transcriber_monitor_last_run_timestamp_seconds ${now}`,
    '# HELP transcriber_monitor_last_duration_seconds How long the probe took, to its final or its failure',
    '# TYPE transcriber_monitor_last_duration_seconds gauge',
    `transcriber_monitor_last_duration_seconds ${result.ms / 1000}`,
    '',
  ].join('\n');
  // Written aside and renamed: a scrape never reads half a file.
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

if (result.ok) {
  console.log(`OK final in ${result.ms} ms: "${result.text.slice(0, 120)}"`);
  process.exit(0);
}
console.log(`FAIL ${result.stage}: ${result.reason}`);
process.exit(1);
