/** etcdlocker's messages on stderr: errors always, progress only with `-v`. */
export interface Log {
  /** Progress (`-v` only). */
  info(message: string): void;
  /** Why etcdlocker is failing or what it had to do about it; always printed. */
  error(message: string): void;
}

export function createLog(verbose: boolean, write: (line: string) => void = (line) => process.stderr.write(line)): Log {
  const started = performance.now();
  const stamp = () => `${((performance.now() - started) / 1000).toFixed(3)}s`;
  return {
    info: (message) => {
      if (verbose) write(`etcdlocker ${stamp()} ${message}\n`);
    },
    error: (message) => write(`etcdlocker: ${message}\n`),
  };
}
