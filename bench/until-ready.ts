import type { Observable, Subscription } from 'rxjs';
import { asError } from './errors.js';

/**
 * Subscribes to `source$` and resolves with the first value `ready` accepts, leaving the subscription open:
 * `stop()` ends it (for a lock, that releases). An error before then rejects; one after goes to `onLateError`.
 */
export function untilReady<T>(
  source$: Observable<T>,
  ready: (value: T) => boolean,
  onLateError: (err: unknown) => void,
): Promise<{ value: T; stop: () => void }> {
  return new Promise((resolve, reject) => {
    let isReady = false;
    // Read only from stop(), after subscribe() has returned.
    let subscription: Subscription | undefined = undefined;
    subscription = source$.subscribe({
      next: (value) => {
        if (isReady || !ready(value)) return;
        isReady = true;
        resolve({ value, stop: () => subscription?.unsubscribe() });
      },
      error: (err: unknown) => (isReady ? onLateError(err) : reject(asError(err))),
    });
  });
}
