/** How far back a `chunk` may jump before we take it for a restarted stream, not a late packet. */
const RESTART_JUMP = 3000;

/**
 * Orders one tag's packets by `chunk`. Returns -1 for a packet older than one already
 * played (dropped), else how many packets were lost just before it. A `timestamp` jump with
 * a contiguous `chunk` is discontinuous transmission, not loss, so it needs no check here.
 */
export class Sequencer {
  private last: number | undefined;

  accept(chunk: number | undefined): number {
    if (chunk === undefined) return 0;
    const last = this.last;
    if (last === undefined) {
      this.last = chunk;
      return 0;
    }
    let delta = chunk - last;
    // 16-bit sequence numbers wrap, both ways: a packet from before the wrap can arrive after it.
    if (delta < -32768 && last >= 32768 && chunk < 32768 && last < 65536) delta += 65536;
    else if (delta > 32768 && chunk >= 32768 && last < 32768 && chunk < 65536) delta -= 65536;
    if (delta <= 0 && delta > -RESTART_JUMP) return -1;
    this.last = chunk;
    return delta > 1 && delta < RESTART_JUMP ? delta - 1 : 0;
  }

  reset(): void {
    this.last = undefined;
  }
}
