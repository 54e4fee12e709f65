/**
 * Runs `task` for every item with at most `limit` in flight. Thousands of requests at once overrun etcd
 * (`etcdserver: too many requests` once its apply falls 5,000 entries behind its commits), and three failures
 * in a row open etcd3's default circuit breaker for every request on that client.
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
