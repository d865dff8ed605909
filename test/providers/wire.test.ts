/**
 * Reading providers' JSON without trusting its shape: a missing or mistyped field is one
 * value lost (undefined), never an exception in a message handler; and the clip of a
 * server's explanation that error messages quote.
 */
import { describe, expect, it } from 'vitest';
import { arr, asObject, bool, clipDetail, num, obj, parseObject, str } from '../../src/providers/wire.ts';

describe('provider wire readers', () => {
  it('takes only JSON objects for objects', () => {
    expect(asObject({ a: 1 })).toEqual({ a: 1 });
    expect(asObject([1])).toBeUndefined();
    expect(asObject(null)).toBeUndefined();
    expect(asObject('x')).toBeUndefined();
    expect(asObject(3)).toBeUndefined();
    expect(parseObject('{"type":"x"}')).toEqual({ type: 'x' });
    expect(parseObject('[{"type":"x"}]')).toBeUndefined();
    expect(parseObject('null')).toBeUndefined();
    expect(parseObject('{"type":')).toBeUndefined();
  });

  it('reads each field only when it has the type asked for', () => {
    const o = parseObject('{"s":"text","n":1.5,"inf":1e999,"t":true,"f":false,"one":1,"o":{"k":"v"},"a":[1,"2"],"nul":null}');
    expect(str(o, 's')).toBe('text');
    expect(str(o, 'n')).toBeUndefined();
    expect(str(undefined, 's')).toBeUndefined();
    expect(num(o, 'n')).toBe(1.5);
    expect(num(o, 's')).toBeUndefined();
    expect(num(o, 'inf')).toBeUndefined();
    expect(num({ nan: Number.NaN }, 'nan')).toBeUndefined();
    expect(num(undefined, 'n')).toBeUndefined();
    expect(bool(o, 't')).toBe(true);
    expect(bool(o, 'f')).toBe(false);
    expect(bool(o, 'one')).toBe(false);
    expect(bool(undefined, 't')).toBe(false);
    expect(obj(o, 'o')).toEqual({ k: 'v' });
    expect(obj(o, 'a')).toBeUndefined();
    expect(obj(o, 'nul')).toBeUndefined();
    expect(obj(undefined, 'o')).toBeUndefined();
    expect(arr(o, 'a')).toEqual([1, '2']);
    expect(arr(o, 'o')).toEqual([]);
    expect(arr(undefined, 'a')).toEqual([]);
  });

  it('clips an explanation to one line of 200 characters, marking the cut', () => {
    expect(clipDetail('  model\n  not\tfound  ')).toBe('model not found');
    const long = 'x'.repeat(201);
    expect(clipDetail(long)).toBe(`${'x'.repeat(200)}…`);
    expect(clipDetail('x'.repeat(200))).toBe('x'.repeat(200));
    expect(clipDetail('abcdef', 3)).toBe('abc…');
    expect(clipDetail('abc', 3)).toBe('abc');
  });
});
