/**
 * What a contended run records: each grant (who, how long they waited, how long the lock sat free before it),
 * and whether two contenders ever held it at once, for grants inside the measured window.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { spread, summarize, type Summary } from './stats.js';

/** A handoff slower than this waited on something other than the requests: etcd's 100 ms catch-up loop, say. */
export const SLOW_HANDOFF_MS = 90;

export interface HandoffResult {
  contenders: number;
  /** Grants inside the window. */
  grants: number;
  handoffsPerSecond: number;
  /** From asking for the lock to holding it. */
  wait: Summary;
  /** From a holder starting its release to the next holder holding: the handoff itself. */
  gap: Summary;
  slowHandoffs: number;
  fairness: { min: number; max: number; spread: number };
  /** Grants while another contender still held the lock, and increments lost to them. */
  overlaps: number;
  lostIncrements: number;
}

export class HandoffLog {
  private readonly grantsBy: number[];
  private readonly waits: number[] = [];
  private readonly gaps: number[] = [];
  private holders = 0;
  private overlaps = 0;
  private counter = 0;
  private increments = 0;
  private lastReleaseAt: number | undefined;

  constructor(
    private readonly contenders: number,
    readonly windowStart: number,
    readonly windowEnd: number,
  ) {
    this.grantsBy = Array.from({ length: contenders }, () => 0);
  }

  /** Whether new attempts should still start. */
  get open(): boolean {
    return performance.now() < this.windowEnd;
  }

  /** `who` holds the lock now; it asked at `askedAt`. */
  acquired(who: number, askedAt: number): void {
    const now = performance.now();
    if (this.holders > 0) this.overlaps++;
    this.holders++;
    if (now < this.windowStart || now >= this.windowEnd) return;
    this.grantsBy[who]!++;
    this.waits.push(now - askedAt);
    if (this.lastReleaseAt !== undefined) this.gaps.push(now - this.lastReleaseAt);
  }

  /** The work under the lock: a read-modify-write that another holder would break. */
  async increment(): Promise<void> {
    const seen = this.counter;
    await yieldToLoop();
    this.counter = seen + 1;
    this.increments++;
  }

  /** `who` starts releasing. */
  releasing(): void {
    this.holders--;
    this.lastReleaseAt = performance.now();
  }

  result(): HandoffResult {
    const grants = this.grantsBy.reduce((sum, n) => sum + n, 0);
    const gap = summarize(this.gaps);
    return {
      contenders: this.contenders,
      grants,
      handoffsPerSecond: grants / ((this.windowEnd - this.windowStart) / 1000),
      wait: summarize(this.waits),
      gap,
      slowHandoffs: this.gaps.filter((ms) => ms >= SLOW_HANDOFF_MS).length,
      fairness: spread(this.grantsBy),
      overlaps: this.overlaps,
      lostIncrements: this.increments - this.counter,
    };
  }
}
