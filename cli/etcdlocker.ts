#!/usr/bin/env node
/**
 * etcdlocker [options] [--] command [args...]: runs a command while holding a lock on etcd v3.
 * etcdlocker --status -k key [--json]: shows who holds the lock and who waits.
 * Usage errors, --help and --version answer before etcd3 is even loaded.
 */
import { readFileSync } from 'node:fs';
import { HELP, parseArgs, STATUS_USAGE, USAGE, UsageError } from './args.js';
import { cannotStart } from './can-start.js';
import { ExitCode } from './exit-codes.js';
import { createLog } from './log.js';

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
    return status(invocation.config, createLog(invocation.config.verbose));
  }
  const { config } = invocation;
  const log = createLog(config.verbose);
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
    // The lock is released and the client closed; etcd3 may still hold a watch-reconnect timer for a few
    // hundred ms after close, which would only delay the exit. stdout and stderr are synchronous here.
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(
      `etcdlocker: unexpected failure: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = ExitCode.childFailed;
  },
);
