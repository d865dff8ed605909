import { describe, expect, it } from 'vitest';
import { toDispatcherMessage, toUsageMessage } from '../../src/sinks/dispatcher/message.ts';
import { BoundedQueue, outgoing, type Outgoing } from '../../src/sinks/dispatcher/queue.ts';
import type { TranscriptionResult } from '../../src/protocol/outbound.ts';

const result = (over: Partial<TranscriptionResult> = {}): TranscriptionResult => ({
  event: 'transcription-result',
  type: 'transcription-result',
  transcript: [{ text: 'hello world', confidence: 0.9 }],
  is_interim: false,
  message_id: 'm-1',
  participant: { id: 'abc123', tag: 'abc123-a0' },
  timestamp: 1768341932350,
  ...over,
});

const item = (seq: number, text = 'x'): Outgoing =>
  outgoing(seq, { sessionId: 's', endpointId: 'e', text, timestamp: seq, messageId: `m-${seq}` });
const seqs = (q: BoundedQueue) => {
  const out: number[] = [];
  const taken: Outgoing[] = [];
  for (let i = q.shift(); i; i = q.shift()) taken.push(i);
  q.restore(taken);
  for (const i of taken) out.push(i.seq);
  return out;
};

describe('dispatcher message', () => {
  it('is the PROTOCOL §6 shape of a final, keyed by its message_id', () => {
    expect(JSON.stringify(toDispatcherMessage(result({ language: 'en' }), 'conf-1'))).toBe(
      '{"sessionId":"conf-1","endpointId":"abc123","text":"hello world","timestamp":1768341932350,"language":"en","messageId":"m-1"}',
    );
    expect(toDispatcherMessage(result(), 'conf-1')).not.toHaveProperty('language');
  });

  it('is never made from an interim', () => {
    expect(toDispatcherMessage(result({ is_interim: true }), 'conf-1')).toBeUndefined();
  });
});

describe('dispatcher queue', () => {
  it('evicts the oldest beyond its count limit and says which', () => {
    const q = new BoundedQueue({ maxCount: 2, maxBytes: 1 << 20 });
    expect(q.push(item(1))).toEqual([]);
    expect(q.push(item(2))).toEqual([]);
    expect(q.push(item(3)).map((i) => i.seq)).toEqual([1]);
    expect(seqs(q)).toEqual([2, 3]);
  });

  it('evicts beyond its byte limit', () => {
    const big = item(1, 'a'.repeat(600));
    const q = new BoundedQueue({ maxCount: 100, maxBytes: 1024 });
    q.push(big);
    expect(q.push(item(2, 'b'.repeat(600))).map((i) => i.seq)).toEqual([1]);
    expect(q.bytes).toBeLessThanOrEqual(1024);
    expect(q.length).toBe(1);
  });

  it('puts items back in session order, once, and evicts those already sent first', () => {
    const q = new BoundedQueue({ maxCount: 4, maxBytes: 1 << 20 });
    const [a, b, c, d, e] = [item(1), item(2), item(3), item(4), item(5)];
    q.push(c!);
    q.push(d!);
    b!.sent = true;
    expect(q.restore([b!, a!, b!, c!])).toEqual([]);
    expect(seqs(q)).toEqual([1, 2, 3, 4]);
    // Full: the one already written once gives way before the oldest.
    expect(q.push(e!).map((i) => i.seq)).toEqual([2]);
    expect(seqs(q)).toEqual([1, 3, 4, 5]);
  });

  it('holds the session usage outside its limits: it costs no final and is never evicted', () => {
    const q = new BoundedQueue({ maxCount: 2, maxBytes: 1 << 20 });
    expect(q.push(item(1))).toEqual([]);
    expect(q.push(item(2))).toEqual([]);
    const usage = outgoing(3, toUsageMessage({ sessionId: 's', participants: [], totals: {} }, 's', 3), true);
    expect(q.push(usage)).toEqual([]);
    expect(q.push(item(4)).map((i) => i.seq)).toEqual([1]);
    expect(seqs(q)).toEqual([2, 3, 4]);
    expect(q.push(item(5)).map((i) => i.seq)).toEqual([2]);
    expect(seqs(q)).toEqual([3, 4, 5]);
  });
});
