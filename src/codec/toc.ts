/** Frame durations in tenths of a millisecond by TOC config (RFC 6716 §3.1). */
const FRAME_TENTHS = [
  100, 200, 400, 600, 100, 200, 400, 600, 100, 200, 400, 600, // SILK NB/MB/WB
  100, 200, 100, 200, // hybrid SWB/FB
  25, 50, 100, 200, 25, 50, 100, 200, 25, 50, 100, 200, 25, 50, 100, 200, // CELT
];

/** Duration of an Opus packet in ms from its TOC byte, or 0 when it cannot be told. */
export function opusPacketDurationMs(packet: Uint8Array): number {
  if (packet.length === 0) return 0;
  const toc = packet[0]!;
  const frame = FRAME_TENTHS[toc >> 3]!;
  const code = toc & 3;
  let frames = 1;
  if (code === 1 || code === 2) frames = 2;
  else if (code === 3) {
    if (packet.length < 2) return 0;
    frames = packet[1]! & 0x3f;
  }
  const tenths = frame * frames;
  return tenths > 1200 ? 0 : tenths / 10;
}
