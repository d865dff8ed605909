/**
 * Mixes a session dump's (or a capture's) participants into one WAV file, 48 kHz mono, each
 * decoded with the proxy's codec and placed at its timestamps (scripts/lib/mixdown.ts).
 *
 *   npm run mix -- DUMP.jsonl OUT.wav [--tag TAG]...
 *
 * `--tag` keeps only that participant's stream (repeatable), at its place on the timeline.
 */
import { writeFileSync } from 'node:fs';
import { OpusCodec } from '../src/codec/opus.ts';
import { loadOpusModule } from '../src/runtime/node/wasm.ts';
import { parseCapture } from './lib/capture.ts';
import { readInput, runTool, UsageError } from './lib/cli.ts';
import { MIX_RATE, mixdown } from './lib/mixdown.ts';
import { writeWav } from './lib/wav.ts';

const USAGE = 'usage: npm run mix -- DUMP.jsonl OUT.wav [--tag TAG]...';

void runTool(async () => {
  const args = process.argv.slice(2);
  const positional: string[] = [];
  const tags = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--tag') {
      const tag = args[++i];
      if (tag === undefined) throw new UsageError('--tag needs a value');
      tags.add(tag);
    } else if (args[i]!.startsWith('--')) throw new UsageError(`unknown option ${args[i]}; ${USAGE}`);
    else positional.push(args[i]!);
  }
  const [input, output] = positional;
  if (!input || !output || positional.length > 2) throw new UsageError(USAGE);
  const records = parseCapture(readInput(input).toString('utf8'), input);
  const codec = await OpusCodec.instantiate(await loadOpusModule());
  const mix = mixdown(records, codec, tags.size ? tags : undefined);
  for (const tag of tags) if (!mix.tracks.has(tag)) throw new UsageError(`${input}: no media for tag ${tag} (tags: ${[...mixdown(records, codec).tracks.keys()].join(', ')})`);
  if (mix.tracks.size === 0) throw new UsageError(`${input}: no media frames to mix`);
  writeFileSync(output, writeWav({ sampleRate: MIX_RATE, channels: 1, samples: mix.samples }));
  const seconds = (n: number) => (n / MIX_RATE).toFixed(3);
  for (const [tag, t] of mix.tracks) {
    console.log(`${tag}: ${t.encoding}, ${seconds(t.start)}–${seconds(t.end)} s${t.errors ? `, ${t.errors} payloads did not decode` : ''}`);
  }
  console.log(`${output}: ${seconds(mix.samples.length)} s, ${MIX_RATE} Hz mono, ${mix.tracks.size} participant(s)`);
});
