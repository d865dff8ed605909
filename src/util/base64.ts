/**
 * Strict standard base64. Runtimes with a native codec (Node's Buffer) inject a faster
 * one through `Base64Codec`; this portable version is the reference and the fallback.
 */
export interface Base64Codec {
  /** Returns undefined when `text` is not valid standard base64. */
  decode(text: string): Uint8Array | undefined;
  encode(bytes: Uint8Array): string;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;
const VALID = /^[A-Za-z0-9+/]*={0,2}$/;

export function isBase64(text: string): boolean {
  return text.length % 4 === 0 && VALID.test(text);
}

function decode(text: string): Uint8Array | undefined {
  if (!isBase64(text)) return undefined;
  let pad = 0;
  if (text.endsWith('==')) pad = 2;
  else if (text.endsWith('=')) pad = 1;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const a = DECODE[text.charCodeAt(i)]!;
    const b = DECODE[text.charCodeAt(i + 1)]!;
    const c = DECODE[text.charCodeAt(i + 2)]!;
    const d = DECODE[text.charCodeAt(i + 3)]!;
    const n = (a << 18) | (b << 12) | ((c < 0 ? 0 : c) << 6) | (d < 0 ? 0 : d);
    out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 0xff;
    if (o < out.length) out[o++] = n & 0xff;
  }
  return out;
}

function encode(bytes: Uint8Array): string {
  let out = '';
  const n = bytes.length;
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[v >> 18]! + ALPHABET[(v >> 12) & 63]! + ALPHABET[(v >> 6) & 63]! + ALPHABET[v & 63]!;
  }
  if (i < n) {
    const v = (bytes[i]! << 16) | ((i + 1 < n ? bytes[i + 1]! : 0) << 8);
    out += ALPHABET[v >> 18]! + ALPHABET[(v >> 12) & 63]! + (i + 1 < n ? ALPHABET[(v >> 6) & 63]! : '=') + '=';
  }
  return out;
}

export const portableBase64: Base64Codec = { decode, encode };
