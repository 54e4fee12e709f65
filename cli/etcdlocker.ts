#!/usr/bin/env node
/**
 * etcdlocker [options] [--] command [args...]: runs a command while holding a lock on etcd v3.
 * etcdlocker --status -k key [--json]: shows who holds the lock and who waits.
 * Usage errors, --help and --version answer before etcd3 is even loaded.
 */
import { readFileSync } from 'node:fs';
import { HELP, parseArgs, STATUS_USAGE, USAGE, UsageError } from './args.js';
import { cannotStart } from './can-start.js';
import { ignoreClosedOutput } from './closed-output.js';
import { ExitCode } from './exit-codes.js';
import { createLog, type Log } from './log.js';

/**
 * Errors only, as text, until the command line is parsed; then what it asks for (`-v`, `--log-json`). Usage errors
 * (exit 64) are always text: they come before we know which to use.
 */
let log: Log = createLog({ verbose: false, key: '' });
ignoreClosedOutput();

async function main(argv: string[]): Promise<number> {
  let invocation;
  try {
    invocation = parseArgs(argv, process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const usage = argv.includes('--status') ? STATUS_USAGE : USAGE;
    process.stderr.write(`etcdlocker: ${err.message}\n${usage}\n(etcdlocker --help for more)\n`);
    return ExitCode.usage;
  }
  if (invocation.kind === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (invocation.kind === 'version') {
    process.stdout.write(`etcdlocker ${version()}\n`);
    return 0;
  }
  if (invocation.kind === 'status') {
    const { status } = await import('./status.js');
    log = createLog(invocation.config);
    return status(invocation.config, log);
  }
  const { config } = invocation;
  log = createLog(config);
  const problem = cannotStart(config.command, config.node, process.env);
  if (problem) {
    log.error(problem);
    return ExitCode.childFailed;
  }
  const { run } = await import('./run.js');
  return run(config, log);
}

/** From package.json: two levels up when built (dist/cli/), one when run from source (cli/). */
function version(): string {
  for (const relative of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'etcd-lock' && pkg.version) return pkg.version;
    } catch {
      // not there: try the next place
    }
  }
  return 'unknown';
}

main(process.argv.slice(2)).then(
  (code) => {
    log.event({ event: 'exit', code });
    // The lock is released and the client closed; etcd3 may still hold a watch-reconnect timer for a few
    // hundred ms after close, which would only delay the exit. stdout and stderr are synchronous here.
    process.exit(code);
  },
  (err: unknown) => {
    log.error(`unexpected failure: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    // Not process.exit(): a command that is still running keeps us alive until it ends.
    log.event({ event: 'exit', code: ExitCode.childFailed });
    process.exitCode = ExitCode.childFailed;
  },
);
