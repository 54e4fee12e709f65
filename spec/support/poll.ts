import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `probe` (which may answer by a promise) every 10 ms until it is true; rejects naming `what` after `timeoutMs`. */
export async function until(probe: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const start = performance.now();
  while (!(await probe())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
