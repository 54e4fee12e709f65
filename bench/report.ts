/**
 * docs/benchmarks.md from one run's results: the machine, the command, a table per part, the targets, and
 * the hand-written notes in bench/notes.md (why the figures are what they are), which every run carries over.
 */
import { readFileSync } from 'node:fs';
import { BATON_NAME } from './baton.js';
import { handoffChart } from './chart.js';
import { formatLoad } from './machine.js';
import type { BenchResults, TopologyResults } from './results.js';
import { SCALE_IN_FLIGHT, SCALE_TTL_SECONDS } from './scale.js';
import { count, markdownTable, ms, ratio } from './table.js';
import { checkTargets, SUBJECTS } from './targets.js';

export const CHART_FILE = 'benchmarks-handoffs.svg';

function title(run: TopologyResults): string {
  return run.members === 1 ? 'single-node etcd' : `${run.members}-member etcd cluster`;
}

function floorTable(run: TopologyResults): string {
  return markdownTable(
    ['request', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'n'],
    run.floor.map((row) => [
      row.name,
      ms(row.latency.p50),
      ms(row.latency.p90),
      ms(row.latency.p99),
      ms(row.latency.mean),
      count(row.latency.count),
    ]),
  );
}

function uncontendedTable(run: TopologyResults): string {
  const floor = run.uncontended.find((row) => row.kind.short === SUBJECTS.floor)?.latency.p50 ?? Number.NaN;
  const etcd3 = run.uncontended.find((row) => row.kind.short === SUBJECTS.etcd3)?.latency.p50 ?? Number.NaN;
  return markdownTable(
    ['acquire + release', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'p50 vs floor', 'etcd3 Lock / this', 'n'],
    run.uncontended.map((row) => [
      row.kind.name + (row.lateErrors ? ` (${row.lateErrors} errors)` : ''),
      ms(row.latency.p50),
      ms(row.latency.p90),
      ms(row.latency.p99),
      ms(row.latency.mean),
      ratio(row.latency.p50 / floor),
      ratio(etcd3 / row.latency.p50),
      count(row.latency.count),
    ]),
  );
}

function contendedTable(run: TopologyResults, k: number): string {
  const rows = run.contended.find((entry) => entry.k === k)?.rows ?? [];
  const floor = rows.find((row) => row.name === BATON_NAME)?.handoffsPerSecond ?? Number.NaN;
  return markdownTable(
    [
      `K=${k}`,
      'handoffs/s',
      'vs floor',
      'wait p50 ms',
      'wait p99 ms',
      'handoff p50 ms',
      'handoff max ms',
      'handoffs >= 90 ms',
      'grants per contender',
      'overlaps / lost increments',
      'notes',
    ],
    rows.map((row) => [
      row.name,
      count(row.handoffsPerSecond),
      `${((row.handoffsPerSecond / floor) * 100).toFixed(0)}%`,
      ms(row.wait.p50),
      ms(row.wait.p99),
      ms(row.gap.p50),
      ms(row.gap.max),
      String(row.slowHandoffs),
      `${row.fairness.min}-${row.fairness.max} (spread ${row.fairness.spread})`,
      `${row.overlaps} / ${row.lostIncrements}`,
      [
        row.stalled ? 'stalled' : '',
        row.failure ? `failed: ${row.failure}` : '',
        row.lateErrors ? `${row.lateErrors} late errors` : '',
      ]
        .filter(Boolean)
        .join('; ') || '-',
    ]),
  );
}

function scaleTable(run: TopologyResults): string {
  return markdownTable(
    [
      'locks held at once',
      'N',
      'acquire all, ms',
      'release all, ms',
      'heap + external added, MB',
      'RSS added, MB',
      'keepalives/s (etcd)',
      'keepalive streams',
      'failed',
    ],
    run.scale.map((row) => [
      row.name,
      count(row.locks),
      row.timedOut ? 'timed out' : ms(row.acquireMs),
      ms(row.releaseMs),
      row.heapAddedMb.toFixed(1),
      row.rssAddedMb.toFixed(1),
      row.keepalivesPerSecond.toFixed(1),
      String(row.keepaliveStreams),
      String(row.failures),
    ]),
  );
}

function cliTable(run: TopologyResults): string {
  const node = run.cli[0]?.time.p50 ?? Number.NaN;
  return markdownTable(
    ['command', 'p50 ms', 'p90 ms', 'min ms', 'vs `node -e 0`', 'runs', 'failed'],
    run.cli.map((row) => [
      row.name,
      ms(row.time.p50),
      ms(row.time.p90),
      ms(row.time.min),
      ratio(row.time.p50 / node),
      String(row.time.count),
      row.failures ? `${row.failures} (${row.lastError ?? ''})` : '0',
    ]),
  );
}

function startupTable(run: TopologyResults): string {
  return markdownTable(
    ['start-up step (fresh node each)', 'median ms'],
    run.startup.map((step) => [step.name, ms(step.medianMs)]),
  );
}

function targetsTable(run: TopologyResults): string {
  return markdownTable(
    ['target (single-node etcd)', 'measured', 'met'],
    checkTargets(run).map((check) => [
      check.target,
      check.measured,
      check.met === undefined ? '?' : check.met ? 'yes' : '**no**',
    ]),
  );
}

export function renderChart(results: BenchResults): string {
  return handoffChart(
    results.config.contenders,
    results.runs
      .filter((run) => run.contended.length > 0)
      .map((run) => {
        const labels = [...new Set(run.contended.flatMap((entry) => entry.rows.map((row) => row.short)))];
        return {
          title: title(run),
          series: labels.map((label) => ({
            label,
            values: results.config.contenders.map(
              (k) =>
                run.contended.find((entry) => entry.k === k)?.rows.find((row) => row.short === label)
                  ?.handoffsPerSecond ?? Number.NaN,
            ),
          })),
        };
      }),
  );
}

export function renderReport(results: BenchResults, notesFile: URL): string {
  const { machine, config } = results;
  const out: string[] = [
    '# Benchmarks',
    '',
    '<!-- Written by `npm run bench` (bench/main.ts); the notes at the end come from bench/notes.md. -->',
    '',
    `Command: \`${results.command}\`. Started ${machine.startedAt}; scale ${config.scale} (\`BENCH_SCALE\`).`,
    '',
    markdownTable(
      ['machine', ''],
      [
        ['CPU', `${machine.cpu}, ${machine.cores} cores`],
        ['memory', `${machine.memoryGb} GB`],
        ['OS', machine.os],
        ['code', machine.commit],
        ['Node.js', machine.node],
        [
          'etcd',
          `${machine.etcd}, fsync on, data dir on local disk, heartbeat 100 ms, election 1000 ms, \`--enable-v2\``,
        ],
        ['load average (1/5/15 min) before', formatLoad(machine.loadBefore)],
        ['load average (1/5/15 min) after', formatLoad(machine.loadAfter)],
      ],
    ),
    '',
    'Every figure is from this one run. etcd ran on the same machine as the clients (loopback), so the floor',
    'is mostly fsync and CPU; a load average near or above the core count means other processes competed for',
    'the CPU, which inflates tails (p99) most.',
    '',
  ];
  const single = results.runs.find((run) => run.members === 1);
  if (single) out.push('## Targets', '', targetsTable(single), '');
  for (const run of results.runs) {
    out.push(`## ${title(run)}`, '');
    if (run.floor.length) out.push('### 1. The floor: raw etcd requests (etcd3 client)', '', floorTable(run), '');
    if (run.uncontended.length) {
      out.push(
        '### 2. Uncontended acquire + release',
        '',
        'One contender per lock, a free key, taken and released again and again on one client; release counts',
        'until etcd has seen it. Interleaved in rounds so that load from elsewhere falls on every lock alike.',
        '',
        uncontendedTable(run),
        '',
      );
    }
    if (run.contended.length) {
      out.push(
        '### 3. Contended handoffs',
        '',
        'K contenders on one key, each on its own client: acquire, increment a shared counter (with a turn of the',
        'event loop in between, so an overlap would lose an increment), release, repeat. *Wait*: from asking to',
        'holding. *Handoff*: from one holder starting its release to the next holding.',
        '',
      );
      for (const entry of run.contended) out.push(contendedTable(run, entry.k), '');
    }
    if (run.scale.length) {
      out.push(
        '### 4. Scale: many locks in one process',
        '',
        `N distinct free locks on one client, lease TTL ${SCALE_TTL_SECONDS} s (one keepalive per lease every`,
        `${SCALE_TTL_SECONDS / 2} s). The Locker rows ask for all N at once (the Locker batches them: 64 per transaction,`,
        `4 transactions in flight); the others keep ${SCALE_IN_FLIGHT} acquisitions in flight. Keepalives as etcd counted`,
        'them while all N were held. Memory: heap + external after a full GC, holding all N, minus the same just',
        'before asking (the client already connected), in a fresh process per row.',
        '',
        scaleTable(run),
        '',
      );
    }
    if (run.cli.length) {
      out.push('### 5. CLI', '', cliTable(run), '', startupTable(run), '');
    }
  }
  out.push(`![handoffs per second against K](${CHART_FILE})`, '');
  out.push(readFileSync(notesFile, 'utf8').trim(), '');
  return out.join('\n');
}
