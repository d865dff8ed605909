/**
 * The default microphone as 16-bit mono PCM, read from `arecord` (alsa-utils) or `sox` when
 * one of them is installed: the proxy takes that PCM as it is (`l16`, docs/PROTOCOL.md §4.3),
 * so no Opus encoder is needed on this side. A recorder program rather than an npm binding:
 * the npm microphone packages are themselves wrappers around these two.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export const MIC_RATE = 16_000;

/** The first executable `name` on `PATH`. */
export function which(name: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The recorder command line, raw S16LE mono at MIC_RATE on stdout; undefined when none is installed. */
export function recorder(): { command: string; args: string[] } | undefined {
  const arecord = which('arecord');
  if (arecord) return { command: arecord, args: ['-q', '-t', 'raw', '-f', 'S16_LE', '-r', String(MIC_RATE), '-c', '1'] };
  const sox = which('sox');
  if (sox) return { command: sox, args: ['-q', '-d', '-t', 'raw', '-L', '-b', '16', '-e', 'signed-integer', '-c', '1', '-r', String(MIC_RATE), '-'] };
  return undefined;
}

export const NO_RECORDER = 'no microphone recorder found: install alsa-utils (arecord) or sox, or stream a file instead (npm run stream -- samples/speech.ogg)';

/**
 * Starts recording; `onPcm` gets the bytes in slices of at least 100 ms, `onEnd` the
 * recorder's exit (with its stderr when it failed, e.g. no capture device).
 */
export function record(cmd: { command: string; args: string[] }, onPcm: (bytes: Buffer) => void, onEnd: (problem?: string) => void): ChildProcess {
  const child = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const slice = (MIC_RATE / 10) * 2;
  let pending: Buffer[] = [];
  let size = 0;
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    pending.push(chunk);
    size += chunk.length;
    if (size < slice) return;
    onPcm(Buffer.concat(pending));
    pending = [];
    size = 0;
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.on('error', (error) => onEnd(`${cmd.command}: ${error.message}`));
  child.on('close', (code, signal) => {
    if (size > 0) onPcm(Buffer.concat(pending));
    onEnd(code === 0 || signal === 'SIGINT' || signal === 'SIGTERM' ? undefined : `${cmd.command} exited with ${code ?? signal}: ${stderr.trim() || 'no message'}`);
  });
  return child;
}
