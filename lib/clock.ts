import { performance } from 'node:perf_hooks';
import type { SchedulerLike } from 'rxjs';

/**
 * The clock for local deadlines: the scheduler's when one is given (virtual time in tests), else the
 * monotonic `performance.now()`, which a wall-clock step (NTP, a VM resume) cannot move.
 */
export function clockOf(scheduler: SchedulerLike | undefined): () => number {
  return scheduler ? () => scheduler.now() : () => performance.now();
}
