/** Wall time of short commands, each run in turn so that load from elsewhere spreads over all of them. */
import { spawnSync } from 'node:child_process';
import { summarize, type Summary } from './stats.js';

export interface Command {
  name: string;
  file: string;
  args: string[];
}

export interface WallTimeRow {
  name: string;
  time: Summary;
  /** Runs that exited non-zero, with the last one's stderr. */
  failures: number;
  lastError: string | undefined;
}

export function measureWallTimes(commands: Command[], runs: number, warmup = 2): WallTimeRow[] {
  const times = commands.map(() => [] as number[]);
  const failures = commands.map(() => 0);
  const errors: (string | undefined)[] = commands.map(() => undefined);
  for (let run = -warmup; run < runs; run++) {
    commands.forEach((command, i) => {
      const start = performance.now();
      const result = spawnSync(command.file, command.args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
      const ms = performance.now() - start;
      if (result.status !== 0) {
        failures[i]!++;
        errors[i] = `${result.status ?? result.signal}: ${String(result.stderr).trim() || String(result.error)}`;
      }
      if (run >= 0) times[i]!.push(ms);
    });
  }
  return commands.map((command, i) => ({
    name: command.name,
    time: summarize(times[i]!),
    failures: failures[i]!,
    lastError: errors[i],
  }));
}
