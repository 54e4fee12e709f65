/** Memory of this process after a full garbage collection (run node with --expose-gc), in MB. */

export interface MemorySample {
  /** V8 heap in use plus memory held outside it (Buffers and the like). */
  heapMb: number;
  rssMb: number;
  /** Whether a collection ran first; without --expose-gc the figures include garbage. */
  collected: boolean;
}

const MB = 1024 * 1024;

export async function memoryNow(): Promise<MemorySample> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    // Twice, with a turn of the event loop between, so weak references and finalizers settle.
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  const usage = process.memoryUsage();
  return { heapMb: (usage.heapUsed + usage.external) / MB, rssMb: usage.rss / MB, collected: gc !== undefined };
}
