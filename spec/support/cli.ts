/**
 * Runs the built etcdlocker (dist/cli/etcdlocker.cjs, so `npm run build` first: `npm test` does) as a real
 * process, and helpers for what its children leave behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { LogRecord } from '../../cli/log.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ETCDLOCKER = path.join(ROOT, 'dist/cli/etcdlocker.cjs');
export const FIXTURES = path.join(ROOT, 'spec/cli/fixtures');

/** A finished etcdlocker run. */
export interface LockerResult {
  /** Exit code, or 128 + signal when it died by a signal itself. */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from spawn to exit. */
  elapsedMs: number;
}

/** A running etcdlocker. */
export interface LockerProcess {
  readonly process: ChildProcess;
  readonly pid: number;
  /** What it printed so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once `pattern` shows up on stderr (use `-v`), or rejects after `timeoutMs`. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves when it exits (rejects after `timeoutMs`, killing it). */
  result(timeoutMs?: number): Promise<LockerResult>;
  /** SIGKILL if still running. */
  kill(): void;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts `etcdlocker ...args` with `env` added to this process's environment. */
export function startLocker(args: readonly string[], env: NodeJS.ProcessEnv = {}): LockerProcess {
  const started = performance.now();
  const child = spawn(process.execPath, [ETCDLOCKER, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<LockerResult>((resolve) => {
    child.once('close', (code, signal) => {
      running.delete(child);
      resolve({
        code: code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0),
        signal,
        stdout,
        stderr,
        elapsedMs: performance.now() - started,
      });
    });
  });
  return {
    process: child,
    pid: child.pid ?? -1,
    stdout: () => stdout,
    stderr: () => stderr,
    async waitForStderr(pattern, timeoutMs = 20_000) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const match = stderr.match(pattern);
        if (match) return match;
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`etcdlocker exited before printing ${String(pattern)}; stderr:\n${stderr}`);
        }
        if (performance.now() > deadline) throw new Error(`no ${String(pattern)} on stderr:\n${stderr}`);
        await sleep(10);
      }
    },
    async result(timeoutMs = 60_000) {
      // The timer is cancelled once the process exits: a pending one would keep the test file alive for a minute.
      const cancel = new AbortController();
      const timer = sleep(timeoutMs, 'timeout' as const, { signal: cancel.signal }).catch(() => 'cancelled' as const);
      const outcome = await Promise.race([exited, timer]);
      cancel.abort();
      if (outcome === 'timeout' || outcome === 'cancelled') {
        child.kill('SIGKILL');
        throw new Error(`etcdlocker did not exit within ${timeoutMs} ms; stderr:\n${stderr}`);
      }
      return outcome;
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Runs `etcdlocker ...args` to the end. */
export function runLocker(args: readonly string[], env?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<LockerResult> {
  return startLocker(args, env).result(timeoutMs);
}

/**
 * The `--log-json` records in etcdlocker's stderr so far: every whole line that is a JSON object with an `event`.
 * Other lines (the command's own stderr, which is etcdlocker's) and a last line not yet ended are skipped.
 *
 * @example
 * logRecords(locker.stderr()).find((r) => r.event === 'acquired');
 */
export function logRecords(stderr: string): LogRecord[] {
  return stderr
    .split('\n')
    .slice(0, -1)
    .flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        const record = JSON.parse(line) as Partial<LogRecord> | null;
        return record && typeof record.event === 'string' ? [record as LogRecord] : [];
      } catch {
        return [];
      }
    });
}

/** True while a process with this PID runs. A zombie (dead, not yet reaped by its parent) counts as dead. */
export function isAlive(pid: number): boolean {
  const state = processState(pid);
  return state !== undefined && state !== 'Z';
}

/** The process's state letter from /proc (`R`, `S`, `T` when stopped, `Z` a zombie...), undefined when it is gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ...": comm may hold spaces and parentheses, so read after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** A temporary directory for a test's files, removed by the returned `remove()`. */
export function tempDir(label: string): { dir: string; file(name: string): string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `etcdlocker-${label}-`));
  return {
    dir,
    file: (name) => path.join(dir, name),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Polls until `file` exists and has content; returns it. */
export async function waitForFile(file: string, timeoutMs = 20_000): Promise<string> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const text = readFileSync(file, 'utf8');
      if (text.length > 0) return text;
    } catch {
      // not yet
    }
    if (performance.now() > deadline) throw new Error(`${file} never appeared`);
    await sleep(10);
  }
}

/** Writes an executable shell script and returns its path. */
export function writeScript(file: string, body: string): string {
  writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

/** A listener standing in for etcd, counting connections: bad usage must be reported before anything connects. */
export interface FakeEtcd {
  /** `127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** How many connections it has accepted (and closed at once) so far. */
  connections(): number;
  close(): void;
}

/**
 * @example
 * const fake = await startFakeEtcd();
 * const before = fake.connections();
 * await runLocker(['-e', fake.endpoint, '--bogus']);
 * assert.equal(fake.connections(), before);
 */
export async function startFakeEtcd(): Promise<FakeEtcd> {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    endpoint: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: () => connections,
    close: () => void server.close(),
  };
}
