/**
 * The least a Node WebSocket relay can do per pass-through frame on this machine: the pass-through
 * rows' reference in `npm run bench`. It speaks just enough of the proxy's wire for the load
 * generator and the Deepgram sink: per `media` message one JSON.parse, one base64 decode and one
 * ws.send of the packet on that participant's upstream socket. No validation, no sequencing,
 * no metrics, no logs, no timers. Run by bench/load.ts like the server (same env, same V8 flags),
 * never in production.
 */
import WebSocket, { WebSocketServer } from 'ws';

const base = process.env.DEEPGRAM_BASE_URL!;
const key = process.env.DEEPGRAM_API_KEY!;

interface Upstream {
  socket: WebSocket;
  /** Packets that arrived while the upstream socket was opening. */
  pending: Buffer[] | undefined;
}

function openUpstream(language: string): Upstream {
  const url = `${base}/listen?encoding=opus&sample_rate=48000&language=${encodeURIComponent(language)}`;
  const upstream: Upstream = { socket: new WebSocket(url, { headers: { authorization: `Token ${key}` } }), pending: [] };
  upstream.socket.on('open', () => {
    for (const packet of upstream.pending!) upstream.socket.send(packet);
    upstream.pending = undefined;
  });
  return upstream;
}

const server = new WebSocketServer({ host: process.env.HOST, port: Number(process.env.PORT), perMessageDeflate: false });
server.on('connection', (client, request) => {
  const language = new URL(request.url ?? '/', 'http://relay').searchParams.get('lang') ?? '';
  const upstreams = new Map<string, Upstream>();
  client.on('message', (data) => {
    const message = JSON.parse(String(data)) as { event?: string; media?: { tag: string; payload: string } };
    if (message.event !== 'media' || !message.media) return;
    let upstream = upstreams.get(message.media.tag);
    if (!upstream) upstreams.set(message.media.tag, (upstream = openUpstream(language)));
    const packet = Buffer.from(message.media.payload, 'base64');
    if (upstream.pending) upstream.pending.push(packet);
    else upstream.socket.send(packet);
  });
  client.on('close', () => {
    for (const upstream of upstreams.values()) upstream.socket.close();
  });
});
server.on('listening', () => {
  const address = server.address();
  console.log(JSON.stringify({ msg: 'listening', port: typeof address === 'object' ? address?.port : undefined }));
});

// Exit on the bench's SIGTERM rather than die of it, so that BENCH_PROFILE's --cpu-prof is written.
process.on('SIGTERM', () => process.exit(0));
