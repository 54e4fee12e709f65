/**
 * etcdlocker's own output (the log on stderr, `--help` and `--status` on stdout) may be a pipe whose reader goes
 * away: `etcdlocker -v ... 2>&1 | head`, a log shipper that dies. Node.js reports the failed write (EPIPE) as an
 * `error` event on the stream, and an `error` nobody listens to ends the process: with the command still running,
 * unsupervised, and the lock kept only until its lease expires, when another holder may start while that command
 * still runs. So a failed write of ours is dropped: the lock, the command and the exit code do not depend on anyone
 * reading what we print (the command's own output is its business: it has the same file descriptors, not ours).
 */
export function ignoreClosedOutput(streams: NodeJS.WritableStream[] = [process.stdout, process.stderr]): void {
  for (const stream of streams) stream.on('error', () => undefined);
}
