/** Pauses between tries of a write that failed: from 50 ms, doubling, up to 1 s. */
export const RETRY_FIRST_MS = 50;
export const RETRY_MAX_MS = 1000;

/**
 * Runs `write` until it succeeds. After a failure, `again(err, pauseMs)` says whether to try once more after
 * `pauseMs`; when it says no, the write is given up. Never rejects: a release that etcd cannot take is left to
 * the lease's TTL (or, for a locker's shared lease, to the end of its session).
 */
export async function retryWrite(
  write: () => Promise<unknown>,
  again: (err: unknown, pauseMs: number) => boolean,
): Promise<void> {
  for (let pauseMs = RETRY_FIRST_MS; ; pauseMs = Math.min(pauseMs * 2, RETRY_MAX_MS)) {
    try {
      await write();
      return;
    } catch (err) {
      if (!again(err, pauseMs)) return;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }
}
