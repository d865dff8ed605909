/**
 * The wire's small pieces as the client sees them (docs/PROTOCOL.md §3-§5): the encodings a
 * start accepts, which events are known, how a refused frame's fields are named, pongs, error
 * messages and their provider codes, and the participant a tag belongs to.
 */
import * as v from 'valibot';
import { describe, expect, it } from 'vitest';
import { InboundEvent, InputEncoding, describeIssues, isKnownEvent } from '../../src/protocol/inbound.ts';
import { errorMessage, pong, providerErrorCode, providerSwitched } from '../../src/protocol/outbound.ts';
import { participantIdOf } from '../../src/protocol/participant.ts';

describe('inbound', () => {
  it('takes ogg as another name for ogg-opus, and the other encodings as they are', () => {
    expect(['opus', 'ogg-opus', 'ogg', 'l16'].map((e) => v.parse(InputEncoding, e))).toEqual(['opus', 'ogg-opus', 'ogg-opus', 'l16']);
    expect(v.safeParse(InputEncoding, 'mp3').success).toBe(false);
  });

  it('knows the five events by name, and nothing that is not a string', () => {
    expect(['start', 'media', 'stop', 'ping', 'info'].every(isKnownEvent)).toBe(true);
    expect(['pong', 'Media', '', 42, undefined, { event: 'media' }].some(isKnownEvent)).toBe(false);
  });

  it('names the field of each problem, at most three, on one line', () => {
    const bad = v.safeParse(InboundEvent, { event: 'media', sequenceNumber: -1, media: { tag: 7, chunk: 'x', timestamp: 'y' } });
    expect(bad.success).toBe(false);
    const text = describeIssues(bad.issues!);
    const parts = text.split('; ');
    expect(parts).toHaveLength(3);
    for (const part of parts) expect(part).toMatch(/^[a-zA-Z]+(\.[a-zA-Z]+)*: \S/);
    expect(text).toContain('media.tag: ');
    // A problem with no path (the whole message) is its message alone.
    expect(describeIssues([{ message: 'message is not an object' } as v.BaseIssue<unknown>])).toBe('message is not an object');
  });
});

describe('outbound', () => {
  it('answers a ping with its id, whatever its JSON type, and without one when it had none', () => {
    expect(pong(undefined)).toBe('{"event":"pong"}');
    expect(pong(7)).toBe('{"event":"pong","id":7}');
    expect(pong(null)).toBe('{"event":"pong","id":null}');
    expect(pong({ a: ['b'] })).toBe('{"event":"pong","id":{"a":["b"]}}');
    // An id nested deeper than JSON.stringify's stack: no pong (the caller refuses the ping).
    let deep: unknown[] = [];
    for (let i = 0; i < 1_000_000; i++) deep = [deep];
    expect(pong(deep)).toBeUndefined();
  });

  it('tells which provider a participant moved from and to, and why', () => {
    expect(providerSwitched('abc-1', 'deepgram', 'openai', 'auth')).toEqual({ event: 'provider-switched', tag: 'abc-1', from: 'deepgram', to: 'openai', reason: 'auth' });
  });

  it('gives each provider failure its client code', () => {
    expect((['auth', 'rate_limited', 'unreachable', 'handshake', 'closed', 'protocol'] as const).map(providerErrorCode)).toEqual([
      'provider_auth',
      'provider_rate_limited',
      'provider_unreachable',
      'provider_error',
      'provider_error',
      'provider_error',
    ]);
  });

  it('writes an error with its tag and provider only when known', () => {
    expect(JSON.parse(errorMessage('bad_base64', 'media payload is not valid base64'))).toEqual({
      event: 'error',
      code: 'bad_base64',
      message: 'media payload is not valid base64',
    });
    expect(JSON.parse(errorMessage('provider_auth', 'refused', { tag: 'abc-1', provider: 'openai' }))).toEqual({
      event: 'error',
      code: 'provider_auth',
      message: 'refused',
      tag: 'abc-1',
      provider: 'openai',
    });
  });
});

it('a tag belongs to the participant named by its leading hex run, any other tag to itself', () => {
  expect(['abc123-a0', 'aaaaaaaa-305123557', 'ABCDEF-1', 'speaker-1', 'abc123', '-1'].map(participantIdOf)).toEqual([
    'abc123',
    'aaaaaaaa',
    'ABCDEF',
    'speaker-1',
    'abc123',
    '-1',
  ]);
});
