/**
 * Where a runtime cannot set handshake headers (browsers, some edge runtimes), Deepgram
 * takes the key as the subprotocol pair `token`, `<key>`: one form, never both.
 */
import { afterEach, expect, it } from 'vitest';
import { createDeepgram, type DeepgramConfig } from '../../src/providers/deepgram.ts';
import type { ConnectionListener, Transcript } from '../../src/providers/provider.ts';
import { createLogger } from '../../src/log.ts';
import type { SocketConnector } from '../../src/net.ts';
import { nodeBase64 } from '../../src/runtime/node/base64.ts';
import { nodeConnector } from '../../src/runtime/node/connector.ts';
import { systemTimers } from '../../src/util/timers.ts';
import { FakeDeepgram } from '../fakes/deepgram.ts';
import { packetsByTag } from '../helpers/fixtures.ts';
import { TAG_B } from '../helpers/client.ts';

let fake: FakeDeepgram | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

const config = (f: FakeDeepgram): DeepgramConfig => ({
  apiKey: f.apiKey,
  baseUrl: f.baseUrl,
  model: 'nova-3',
  punctuate: true,
  diarize: false,
  encoding: 'opus',
  sampleRate: 16000,
  keepAliveMs: 4000,
});

function listener(into: Transcript[]): ConnectionListener {
  return { transcript: (t) => into.push(t), error: () => undefined, closed: () => undefined, expiring: () => undefined };
}

for (const supportsHeaders of [true, false]) {
  it(`authenticates with ${supportsHeaders ? 'the Authorization header' : 'the token subprotocol'} only`, async () => {
    fake = await FakeDeepgram.start();
    const connector: SocketConnector = { supportsHeaders, connect: (url, options, handlers) => nodeConnector.connect(url, options, handlers) };
    const provider = createDeepgram(config(fake), { connector, base64: nodeBase64, timers: systemTimers });
    const transcripts: Transcript[] = [];
    const conn = await provider.connect({ format: { kind: 'opus' }, log: createLogger('error') }, listener(transcripts));
    for (const packet of packetsByTag().get(TAG_B)!.slice(0, 150)) conn.send(packet, 20);
    await conn.finish(5_000);

    const seen = fake.connections[0]!;
    expect(seen.violations).toEqual([]);
    if (supportsHeaders) {
      expect(seen.headers.authorization).toBe(`Token ${fake.apiKey}`);
      expect(seen.protocols).toEqual([]);
    } else {
      expect(seen.headers.authorization).toBeUndefined();
      expect(seen.protocols).toEqual(['token', fake.apiKey]);
    }
    expect(seen.frames).toHaveLength(150);
    expect(seen.controls.slice(-2)).toEqual(['Finalize', 'CloseStream']);
    expect(transcripts.some((t) => t.kind === 'final')).toBe(true);
  });
}
