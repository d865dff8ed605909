/**
 * The client sink: which results go back to the media server on its own socket, by its
 * flags (docs/PROTOCOL.md §5.3: finals iff sendBack, interims iff sendBack and
 * sendBackInterim), and nothing once the sink is closed. Asserted on the frames a real
 * WebSocket client receives.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { TranscriptionResult } from '../../src/protocol/outbound.ts';
import { createClientSink } from '../../src/sinks/client.ts';
import { final } from '../helpers/clocked-dispatcher.ts';
import { socketPair, type SocketPair } from '../helpers/socket-pair.ts';

let pair: SocketPair | undefined;
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

const interim = (n: number): TranscriptionResult => ({ ...final(n, `interim number ${n}`), is_interim: true });
const ids = (frames: string[]) => frames.map((f) => (JSON.parse(f) as TranscriptionResult).message_id);

describe('client sink', () => {
  it.each([
    { sendBack: true, sendBackInterim: true, expected: ['m-1', 'm-2'] },
    { sendBack: true, sendBackInterim: false, expected: ['m-2'] },
    { sendBack: false, sendBackInterim: true, expected: [] },
    { sendBack: false, sendBackInterim: false, expected: [] },
  ])('sendBack=$sendBack sendBackInterim=$sendBackInterim: sends back $expected of an interim m-1 and a final m-2', async ({ expected, ...flags }) => {
    pair = await socketPair();
    const sink = createClientSink(pair.client, flags);
    sink.deliver(interim(1));
    sink.deliver(final(2));
    expect(ids(await pair.received())).toEqual(expected);
  });

  it('sends each result as its JSON text, unchanged', async () => {
    pair = await socketPair();
    const sink = createClientSink(pair.client, { sendBack: true, sendBackInterim: true });
    sink.deliver(final(7, 'hello there'));
    expect((await pair.received()).map((f) => JSON.parse(f) as unknown)).toEqual([final(7, 'hello there')]);
  });

  it('sends nothing once closed, and does not outlive the client', async () => {
    pair = await socketPair();
    const sink = createClientSink(pair.client, { sendBack: true, sendBackInterim: true });
    expect(sink.outlivesClient).toBe(false);
    sink.deliver(final(1));
    await sink.close();
    sink.deliver(final(2));
    sink.deliver(interim(3));
    expect(ids(await pair.received())).toEqual(['m-1']);
  });
});
