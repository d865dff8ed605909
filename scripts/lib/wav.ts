/**
 * 16-bit PCM WAV files: read (flite's output, test microphones) and written (`npm run mix`).
 * Hand-written: RIFF's PCM case is a 44-byte header, smaller than a dependency's API.
 */
export interface Wav {
  sampleRate: number;
  channels: number;
  /** Interleaved signed 16-bit samples. */
  samples: Int16Array;
}

/** Parses a 16-bit PCM WAV (any chunk order, unknown chunks skipped); throws on anything else. */
export function readWav(bytes: Uint8Array): Wav {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('not a WAV file (no RIFF/WAVE header)');
  let format: { sampleRate: number; channels: number } | undefined;
  for (let at = 12; at + 8 <= bytes.length; ) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === 'fmt ') {
      const codec = view.getUint16(body, true);
      const bits = view.getUint16(body + 14, true);
      if (codec !== 1 || bits !== 16) throw new Error(`only 16-bit PCM WAV is supported (format ${codec}, ${bits} bits)`);
      format = { channels: view.getUint16(body + 2, true), sampleRate: view.getUint32(body + 4, true) };
    } else if (id === 'data') {
      if (!format) throw new Error('WAV data before its fmt chunk');
      const end = Math.min(bytes.length, body + size);
      // A copy, aligned for Int16Array (Buffer's slice would be a view into a pooled buffer).
      const copy = new Uint8Array(bytes.subarray(body, body + ((end - body) & ~1)));
      return { ...format, samples: new Int16Array(copy.buffer, 0, copy.length / 2) };
    }
    at = body + size + (size & 1);
  }
  throw new Error('WAV file without a data chunk');
}

/** A canonical 16-bit PCM WAV file. */
export function writeWav(wav: Wav): Uint8Array {
  const data = wav.samples.length * 2;
  const out = new Uint8Array(44 + data);
  const view = new DataView(out.buffer);
  const put = (at: number, text: string) => out.set([...text].map((c) => c.charCodeAt(0)), at);
  put(0, 'RIFF');
  view.setUint32(4, 36 + data, true);
  put(8, 'WAVE');
  put(12, 'fmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, wav.channels, true);
  view.setUint32(24, wav.sampleRate, true);
  view.setUint32(28, wav.sampleRate * wav.channels * 2, true);
  view.setUint16(32, wav.channels * 2, true);
  view.setUint16(34, 16, true);
  put(36, 'data');
  view.setUint32(40, data, true);
  for (let i = 0; i < wav.samples.length; i++) view.setInt16(44 + i * 2, wav.samples[i]!, true);
  return out;
}
