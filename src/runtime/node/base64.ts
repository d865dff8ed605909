import { isBase64, type Base64Codec } from '../../util/base64.ts';

/** Node's native base64, with the strict check Buffer.from does not make. */
export const nodeBase64: Base64Codec = {
  decode(text) {
    if (!isBase64(text)) return undefined;
    const buf = Buffer.from(text, 'base64');
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  },
  encode(bytes) {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  },
};
