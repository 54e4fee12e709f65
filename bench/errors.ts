/** Failures arrive as `unknown`; promises here reject with Errors. */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
