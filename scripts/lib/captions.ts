/**
 * Prints what the proxy sends, as captions. On a terminal an utterance's interims overwrite
 * each other on one line and its final stays; elsewhere (a pipe, a file) every message is a
 * line of its own, interims included, so that logs keep everything.
 */
export interface CaptionOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

interface Message {
  event?: string;
  is_interim?: boolean;
  participant?: { tag?: string };
  transcript?: { text?: string }[];
  code?: string;
  message?: string;
  tag?: string;
  provider?: string;
  from?: string;
  to?: string;
}

/** Erase the terminal's current line (carriage return, then ANSI "erase in line", whole line). */
const CLEAR_LINE = '\r\x1b[2K';

export class CaptionPrinter {
  /** Whether the line the cursor is on holds an interim (to be overwritten). */
  private interimShown = false;

  constructor(
    private readonly out: CaptionOutput,
    private readonly err: CaptionOutput = out,
  ) {}

  show(frame: string): void {
    let msg: Message;
    try {
      msg = JSON.parse(frame) as Message;
    } catch {
      return this.line(this.out, frame);
    }
    const tag = msg.participant?.tag ?? msg.tag;
    if (msg.event === 'transcription-result') {
      const text = (msg.transcript ?? []).map((t) => t.text ?? '').join(' ');
      if (msg.is_interim && this.out.isTTY) {
        const shown = `… ${tag}: ${text}`;
        // One terminal line: a wrapped interim could not be erased by CLEAR_LINE.
        const width = Math.max(20, (this.out.columns ?? 80) - 1);
        this.out.write(`${CLEAR_LINE}${shown.length > width ? `…${shown.slice(shown.length - width + 1)}` : shown}`);
        this.interimShown = true;
        return;
      }
      return this.line(this.out, `${msg.is_interim ? 'interim' : 'FINAL  '} ${tag}: ${text}`);
    }
    if (msg.event === 'error') return this.line(this.err, `error   ${tag ?? ''}${tag ? ': ' : ''}${msg.message} (${msg.code})`);
    if (msg.event === 'info') return this.line(this.out, `connected: provider ${msg.provider}`);
    if (msg.event === 'provider-switched') return this.line(this.out, `switched ${tag}: ${msg.from} → ${msg.to}`);
    this.line(this.out, frame);
  }

  /** A line that stays, replacing an interim on the cursor's line. */
  line(to: CaptionOutput, text: string): void {
    if (this.interimShown) {
      this.out.write(CLEAR_LINE);
      this.interimShown = false;
    }
    to.write(`${text}\n`);
  }
}
