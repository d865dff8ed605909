import type { DispatcherMessage } from './message.ts';

/** One final on its way to the dispatcher. */
export interface Outgoing {
  /** Order of the finals within the session: items handed back are put back in this order. */
  readonly seq: number;
  readonly message: DispatcherMessage;
  readonly json: string;
  /** UTF-8 size of `json`, which the byte limit counts. */
  readonly bytes: number;
  /** Written to a dispatcher connection before; waiting again because that connection died. */
  sent: boolean;
  /** Outside the limits, never evicted: the session's one usage message, which must not cost a final. */
  readonly exempt: boolean;
}

export interface QueueLimits {
  maxCount: number;
  maxBytes: number;
}

const encoder = new TextEncoder();

export function outgoing(seq: number, message: DispatcherMessage, exempt = false): Outgoing {
  const json = JSON.stringify(message);
  return { seq, message, json, bytes: encoder.encode(json).length, sent: false, exempt };
}

const counted = (item: Outgoing) => (item.exempt ? 0 : item.bytes);

/**
 * FIFO bounded by count and by bytes. When full, something gives way and is returned to the
 * caller, which counts and logs it: a queue that drops silently hides an outage.
 */
export class BoundedQueue {
  private items: Outgoing[] = [];
  private totalBytes = 0;
  /** Exempt items held (they count toward neither limit). */
  private exempt = 0;

  constructor(private readonly limits: QueueLimits) {}

  get length(): number {
    return this.items.length;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /** Appends; returns what was evicted to make room. */
  push(item: Outgoing): Outgoing[] {
    this.items.push(item);
    this.totalBytes += counted(item);
    if (item.exempt) this.exempt++;
    return this.enforce();
  }

  shift(): Outgoing | undefined {
    const item = this.items.shift();
    if (item) this.totalBytes -= counted(item);
    if (item?.exempt) this.exempt--;
    return item;
  }

  /** Puts items taken out earlier back in session order; returns what was evicted. */
  restore(items: readonly Outgoing[]): Outgoing[] {
    if (items.length === 0) return [];
    const merged: Outgoing[] = [];
    const back = [...new Map(items.map((item) => [item.seq, item])).values()].sort((a, b) => a.seq - b.seq);
    let i = 0;
    let j = 0;
    while (i < back.length || j < this.items.length) {
      const a = back[i];
      const b = this.items[j];
      if (b === undefined || (a !== undefined && a.seq < b.seq)) {
        merged.push(a!);
        this.totalBytes += counted(a!);
        if (a!.exempt) this.exempt++;
        i++;
      } else {
        if (a !== undefined && a.seq === b.seq) i++; // already back: never queue one final twice
        merged.push(b);
        j++;
      }
    }
    this.items = merged;
    return this.enforce();
  }

  /** Empties the queue, returning what it held. */
  clear(): Outgoing[] {
    const all = this.items;
    this.items = [];
    this.totalBytes = 0;
    this.exempt = 0;
    return all;
  }

  /**
   * Evicts until within limits. Finals already written once go first, as they most likely
   * reached the dispatcher; then the oldest, so that what is kept is what people say now.
   */
  private enforce(): Outgoing[] {
    const evicted: Outgoing[] = [];
    while (this.items.length > this.exempt && (this.items.length - this.exempt > this.limits.maxCount || this.totalBytes > this.limits.maxBytes)) {
      const sent = this.items.findIndex((item) => item.sent && !item.exempt);
      const [gone] = this.items.splice(sent === -1 ? this.items.findIndex((item) => !item.exempt) : sent, 1);
      this.totalBytes -= gone!.bytes;
      evicted.push(gone!);
    }
    return evicted;
  }
}
