import type { TestContext } from 'node:test';

/**
 * Registers clean-ups that run in the reverse order (node:test runs `t.after` hooks in the order registered):
 * locks and lockers go before the client they release through, and the client before the etcd it talks to.
 *
 * @example
 * const defer = cleanups(t);
 * const client = new Etcd3({ hosts });
 * defer(() => client.close());
 */
export function cleanups(t: TestContext): (cleanup: () => unknown) => void {
  const stack: (() => unknown)[] = [];
  t.after(async () => {
    for (const cleanup of stack.reverse()) await cleanup();
  });
  return (cleanup) => void stack.push(cleanup);
}
