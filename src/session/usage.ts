/**
 * What a session cost (docs/PROTOCOL.md §5.7): per participant and provider, the audio
 * received (handed to that provider's stream: decoded, concealed or passed through),
 * the audio sent to the provider (what it bills, replays included), utterances, finals and
 * reconnects. Seconds come from sample counts and packet durations, never from wall time.
 *
 * The per-frame hooks only add to numbers: the same figures feed /metrics through cells of
 * the provider's counters (UsageCounters), with no label lookup per frame.
 */
import type { Metrics } from '../metrics.ts';
import type { CounterCell } from '../metrics.ts';

/** One participant's figures with one provider. */
export interface UsageEntry {
  endpointId: string;
  tag: string;
  provider: string;
  receivedSeconds: number;
  sentSeconds: number;
  utterances: number;
  finals: number;
  reconnects: number;
}

/** A session's figures: one entry per participant and provider it used, and the sums by provider. */
export interface UsageReport {
  sessionId: string | null;
  participants: UsageEntry[];
  totals: Record<string, Omit<UsageEntry, 'endpointId' | 'tag' | 'provider'>>;
}

/** The hooks a provider stream calls, one per event. */
export interface StreamUsage {
  received(ms: number): void;
  sent(ms: number): void;
  utterance(): void;
  final(): void;
  reconnect(): void;
}

const seconds = (ms: number) => Math.round(ms) / 1000;

class EntryMeter implements StreamUsage {
  private receivedMs = 0;
  private sentMs = 0;
  private utterances = 0;
  private finals = 0;
  private reconnects = 0;
  private readonly cells: { received: CounterCell; sent: CounterCell; utterances: CounterCell };

  constructor(
    private readonly endpointId: string,
    private readonly tag: string,
    private readonly provider: string,
    metrics: Metrics,
  ) {
    const labels = { provider };
    this.cells = {
      received: metrics.audioReceivedSeconds.cell(labels),
      sent: metrics.audioSentSeconds.cell(labels),
      utterances: metrics.utterances.cell(labels),
    };
  }

  received(ms: number): void {
    this.receivedMs += ms;
    this.cells.received.value += ms / 1000;
  }

  sent(ms: number): void {
    this.sentMs += ms;
    this.cells.sent.value += ms / 1000;
  }

  utterance(): void {
    this.utterances++;
    this.cells.utterances.value++;
  }

  // Finals and reconnects have their counters already (transcriber_transcripts_total, transcriber_backend_reconnects_total).
  final(): void {
    this.finals++;
  }

  reconnect(): void {
    this.reconnects++;
  }

  entry(): UsageEntry {
    return {
      endpointId: this.endpointId,
      tag: this.tag,
      provider: this.provider,
      receivedSeconds: seconds(this.receivedMs),
      sentSeconds: seconds(this.sentMs),
      utterances: this.utterances,
      finals: this.finals,
      reconnects: this.reconnects,
    };
  }
}

/** A session's usage: meters made as participants and providers come, read at any time. */
export class SessionUsage {
  private readonly meters = new Map<string, EntryMeter>();

  constructor(
    private readonly sessionId: string | undefined,
    private readonly metrics: Metrics,
  ) {}

  /** The meter of `tag` with `provider`; a participant back on a provider it used goes on with the same one. */
  meter(endpointId: string, tag: string, provider: string): StreamUsage {
    const key = `${tag}\u0000${provider}`;
    let meter = this.meters.get(key);
    if (!meter) {
      meter = new EntryMeter(endpointId, tag, provider, this.metrics);
      this.meters.set(key, meter);
    }
    return meter;
  }

  report(): UsageReport {
    const participants = [...this.meters.values()].map((m) => m.entry());
    const totals: UsageReport['totals'] = {};
    for (const e of participants) {
      const t = (totals[e.provider] ??= { receivedSeconds: 0, sentSeconds: 0, utterances: 0, finals: 0, reconnects: 0 });
      t.receivedSeconds = Math.round((t.receivedSeconds + e.receivedSeconds) * 1000) / 1000;
      t.sentSeconds = Math.round((t.sentSeconds + e.sentSeconds) * 1000) / 1000;
      t.utterances += e.utterances;
      t.finals += e.finals;
      t.reconnects += e.reconnects;
    }
    return { sessionId: this.sessionId ?? null, participants, totals };
  }
}
