/**
 * A minimal Prometheus text-format registry. prom-client is the usual choice, but it imports
 * node:* modules and so cannot run in workerd or Deno; what we need (labelled counters,
 * gauges read at scrape time, fixed-bucket histograms) fits in this file.
 */
type Labels = Record<string, string>;

interface Metric {
  render(): string;
}

function labelKey(labels: Labels | undefined): string {
  if (!labels) return '';
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels?: Labels, by = 1): void {
    const key = labelKey(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  get(labels?: Labels): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    if (this.values.size === 0) out += `${this.name} 0\n`;
    for (const [k, v] of this.values) out += `${this.name}${k} ${v}\n`;
    return out;
  }
}

/** One series of a CellCounter, added to in place. */
export interface CounterCell {
  value: number;
}

/**
 * A counter whose series are cells the caller keeps and adds to directly: for figures
 * counted per audio frame, where a label lookup per increment would cost more than the count.
 */
export class CellCounter implements Metric {
  private readonly cells = new Map<string, CounterCell>();
  constructor(readonly name: string, readonly help: string) {}

  cell(labels?: Labels): CounterCell {
    const key = labelKey(labels);
    let cell = this.cells.get(key);
    if (!cell) {
      cell = { value: 0 };
      this.cells.set(key, cell);
    }
    return cell;
  }

  get(labels?: Labels): number {
    return this.cells.get(labelKey(labels))?.value ?? 0;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    if (this.cells.size === 0) out += `${this.name} 0\n`;
    for (const [k, c] of this.cells) out += `${this.name}${k} ${c.value}\n`;
    return out;
  }
}

/** A gauge whose value is read when scraped, so nothing on the hot path keeps it current. */
export class Gauge implements Metric {
  constructor(readonly name: string, readonly help: string, private readonly read: () => number) {}
  get(): number {
    return this.read();
  }
  render(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n${this.name} ${this.read()}\n`;
  }
}

export class Histogram implements Metric {
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, private readonly buckets: readonly number[]) {
    this.counts = new Float64Array(buckets.length);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    let cumulative = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      cumulative += this.counts[i]!;
      out += `${this.name}_bucket{le="${this.buckets[i]}"} ${cumulative}\n`;
    }
    out += `${this.name}_bucket{le="+Inf"} ${this.count}\n${this.name}_sum ${this.sum}\n${this.name}_count ${this.count}\n`;
    return out;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }
  cellCounter(name: string, help: string): CellCounter {
    return this.add(new CellCounter(name, help));
  }
  gauge(name: string, help: string, read: () => number): Gauge {
    return this.add(new Gauge(name, help, read));
  }
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }
  render(): string {
    return this.metrics.map((m) => m.render()).join('');
  }
  private add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
}

/** The proxy's metrics. One instance per process (per isolate on workerd). */
export function createMetrics() {
  const registry = new Registry();
  const state = { sessions: 0, participants: 0, providerStreams: 0, detachedSessions: 0, dispatcherQueue: 0, liveDecoders: (): number => 0, loopLagMs: (): number => 0, loopLagLimitMs: 0, loopUtilization: (): number => 0, loopUtilizationLimit: 0 };
  /** The in-process monitor's last outcome (MONITOR_INTERVAL_S); NaN until its first probe. */
  const monitorState = { up: Number.NaN, lastSuccessSeconds: 0, lastDurationSeconds: Number.NaN };
  return {
    registry,
    state,
    sessions: registry.gauge('transcriber_sessions', 'Open transcription sessions', () => state.sessions),
    participants: registry.gauge('transcriber_participants', 'Live participant streams', () => state.participants),
    decoders: registry.gauge('transcriber_opus_decoders', 'Live Opus decoders in the shared WASM instance', () => state.liveDecoders()),
    sessionsTotal: registry.counter('transcriber_sessions_total', 'Sessions opened'),
    sessionsDetached: registry.gauge(
      'transcriber_sessions_detached',
      'Sessions whose client socket has gone, kept for RESUME_GRACE_MS in case it comes back',
      () => state.detachedSessions,
    ),
    sessionsResumed: registry.counter('transcriber_sessions_resumed_total', 'Sessions resumed by a client that came back with the same sessionId'),
    framesTotal: registry.counter('transcriber_media_frames_total', 'media events accepted'),
    inputErrors: registry.counter('transcriber_input_errors_total', 'Client input refused, by reason'),
    decodeErrors: registry.counter('transcriber_decode_errors_total', 'Audio that could not be decoded, by reason'),
    concealedFrames: registry.counter('transcriber_concealed_frames_total', 'Lost frames concealed, by method (fec, plc)'),
    queueDropped: registry.counter(
      'transcriber_provider_queue_dropped_total',
      'Audio frames dropped while a provider stream was unavailable (its session\'s MAX_SESSION_BUFFER_MB full), by provider',
    ),
    audioDroppedSeconds: registry.counter(
      'transcriber_audio_dropped_seconds_total',
      'Seconds of audio those dropped frames held, by provider',
    ),
    clientPauses: registry.counter(
      'transcriber_client_paused_total',
      'Times a client socket stopped being read because a participant\'s queue reached PROVIDER_QUEUE_MS (backpressure)',
    ),
    providerStreams: registry.gauge(
      'transcriber_provider_streams',
      'Live provider streams (connected, connecting or backing off), what MAX_PROVIDER_CONNECTIONS caps',
      () => state.providerStreams,
    ),
    refused: registry.counter(
      'transcriber_refused_total',
      'Work refused by a limit, by reason: max_sessions (upgrades), saturated (upgrades and streams), max_participants (sockets closed), max_provider_connections (streams)',
    ),
    loopLag: registry.gauge('transcriber_event_loop_lag_ms', 'How far behind the event loop runs (worst of the last 0.5 s, while sessions are open)', () => state.loopLagMs()),
    loopLagLimit: registry.gauge(
      'transcriber_event_loop_lag_limit_ms',
      'MAX_EVENT_LOOP_LAG_MS: beyond this lag new sessions are refused with 503 (0: never)',
      () => state.loopLagLimitMs,
    ),
    loopUtilization: registry.gauge(
      'transcriber_event_loop_utilization',
      'The event loop\'s busy fraction (0-1) that every look of the last 0.5 s had at least, while sessions are open (Node; 0 where the runtime does not measure it)',
      () => state.loopUtilization(),
    ),
    loopUtilizationLimit: registry.gauge(
      'transcriber_event_loop_utilization_limit',
      'MAX_EVENT_LOOP_UTILIZATION: at or beyond this busy fraction new sessions (503) and new streams are refused (0: never or not measured)',
      () => state.loopUtilizationLimit,
    ),
    backendErrors: registry.counter('transcriber_backend_errors_total', 'Provider errors, by provider and kind'),
    reconnects: registry.counter('transcriber_backend_reconnects_total', 'Provider stream connections after the first, by provider and reason'),
    failovers: registry.counter('transcriber_provider_switches_total', 'Participants moved between providers, by from, to and reason (probe: back to the preferred one)'),
    replayedSeconds: registry.counter(
      'transcriber_replayed_seconds_total',
      'Audio sent again on a new provider connection because the previous one died before its final, by provider and reason',
    ),
    transcripts: registry.counter('transcriber_transcripts_total', 'Transcripts produced, by provider and kind'),
    audioReceivedSeconds: registry.cellCounter(
      'transcriber_audio_received_seconds_total',
      'Seconds of audio handed to a provider stream (decoded, concealed or passed through), by provider',
    ),
    audioSentSeconds: registry.cellCounter(
      'transcriber_audio_sent_seconds_total',
      'Seconds of audio sent to the provider, replays included: what it bills, by provider',
    ),
    utterances: registry.cellCounter('transcriber_utterances_total', 'Utterances the provider transcribed (interim or final), by provider'),
    dispatcherQueue: registry.gauge('transcriber_dispatcher_queue_depth', 'Finals waiting for the dispatcher', () => state.dispatcherQueue),
    dispatcherDropped: registry.counter(
      'transcriber_dispatcher_dropped_total',
      'Finals that never reached the dispatcher, by reason (queue_full, drain_timeout, closed)',
    ),
    dispatcherDelivered: registry.counter('transcriber_dispatcher_delivered_total', 'Finals handed to the dispatcher, by transport'),
    dispatcherErrors: registry.counter('transcriber_dispatcher_errors_total', 'Dispatcher failures, by transport'),
    authRefused: registry.counter(
      'transcriber_auth_refused_total',
      'Requests to /transcribe refused by AUTH_MODE before the upgrade, by reason (missing_token, bad_token, expired, wrong_audience, wrong_session…)',
    ),
    relayErrors: registry.counter(
      'transcriber_relay_errors_total',
      'Sessions whose remote transcriber (the Worker\'s container) was unavailable or lost, by reason',
    ),
    monitorState,
    monitorProbes: registry.counter(
      'transcriber_monitor_probes_total',
      'In-process synthetic probes (MONITOR_INTERVAL_S), by result: ok, or the failing stage (connect, refused, timeout, closed)',
    ),
    monitorUp: registry.gauge('transcriber_monitor_up', 'Whether the last synthetic probe got its final in time (1) or not (0); NaN before the first', () => monitorState.up),
    monitorLastSuccess: registry.gauge(
      'transcriber_monitor_last_success_timestamp_seconds',
      'When a synthetic probe last passed (Unix seconds; 0: never)',
      () => monitorState.lastSuccessSeconds,
    ),
    monitorLastDuration: registry.gauge(
      'transcriber_monitor_last_duration_seconds',
      'How long the last synthetic probe took, to its final or its failure',
      () => monitorState.lastDurationSeconds,
    ),
    finalLatency: registry.histogram(
      'transcriber_final_latency_seconds',
      'From an utterance\'s first audio to its final transcript',
      [0.25, 0.5, 1, 2, 4, 8, 16, 32],
    ),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
