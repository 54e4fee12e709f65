/** Waits for `work`, or for `ms`, whichever comes first: `true` if time ran out. The timer never outlives it. */
export async function timedOut(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, true))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
