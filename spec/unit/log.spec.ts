import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLog, type LogEvent, type LogOptions, type LogRecord } from '../../cli/log.js';

/** A log over `events` with `options`, and the lines it wrote. */
function written(options: LogOptions, events: readonly LogEvent[]): string[] {
  let out = '';
  const log = createLog(options, (text) => (out += text));
  for (const event of events) log.event(event);
  assert.ok(out === '' || out.endsWith('\n'), 'every line ends with a newline');
  return out === '' ? [] : out.slice(0, -1).split('\n');
}

/** One of each event, in the order of a run that is lost and reaps its command. */
const RUN: LogEvent[] = [
  { event: 'connecting', etcd: 'http://127.0.0.1:2379 (etcd user alice)', id: 'worker-1' },
  { event: 'waiting' },
  { event: 'waiting', waitingFor: { id: 'worker-0', fencingToken: '41' }, ahead: 1 },
  { event: 'acquired', holderKey: '/jobs/a/694d', fencingToken: '45', leaseId: '694d' },
  { event: 'child-started', childPid: 4242, command: ['sh', '-c', 'sleep 9'] },
  { event: 'ping-answered' },
  { event: 'refreshed', fencingToken: '45', ttl: 10 },
  { event: 'lost', fencingToken: '45', reason: 'deleted', detail: 'Lost the lock "/jobs/a" (deleted) [ETCDLOCK_LOST]' },
  { event: 'error', message: 'lost the lock (deleted): ...; stopping the command' },
  { event: 'child-signalled', signal: 'SIGTERM', why: 'lost', graceMs: 937 },
  { event: 'child-signalled', signal: 'SIGKILL', why: 'kill-timeout', graceMs: 937 },
  { event: 'error', message: 'the command outlived SIGTERM by 937 ms: SIGKILL' },
  { event: 'child-exited', code: null, signal: 'SIGKILL' },
  { event: 'child-group-gone' },
  { event: 'releasing' },
  { event: 'released' },
  { event: 'exit', code: 2 },
];

const stripStamp = (line: string) => line.replace(/^etcdlocker \d+\.\d{3}s /, 'etcdlocker ');

describe('createLog: text', () => {
  it('without -v, prints the errors only', () => {
    assert.deepEqual(written({ verbose: false, key: '/jobs/a' }, RUN), [
      'etcdlocker: lost the lock (deleted): ...; stopping the command',
      'etcdlocker: the command outlived SIGTERM by 937 ms: SIGKILL',
    ]);
  });

  it('with -v, the progress lines too, stamped with the seconds since start; lost, releasing and exit have no line', () => {
    const lines = written({ verbose: true, key: '/jobs/a' }, RUN);
    for (const line of lines) assert.match(line, /^etcdlocker(: | \d+\.\d{3}s )/);
    assert.deepEqual(lines.map(stripStamp), [
      'etcdlocker connecting to http://127.0.0.1:2379 (etcd user alice) for "/jobs/a" as worker-1',
      'etcdlocker queued for the lock',
      'etcdlocker waiting behind worker-0 (token 41)',
      'etcdlocker holding /jobs/a/694d with fencing token 45',
      'etcdlocker running sh -c sleep 9',
      'etcdlocker ping answered',
      'etcdlocker refreshed the lease (TTL 10 s)',
      'etcdlocker: lost the lock (deleted): ...; stopping the command',
      "etcdlocker lock lost: SIGTERM to the command's process group, SIGKILL after 937 ms",
      'etcdlocker: the command outlived SIGTERM by 937 ms: SIGKILL',
      'etcdlocker the command was killed by SIGKILL',
      "etcdlocker the command's process group is gone",
      'etcdlocker released the lock',
    ]);
  });

  it('says why it signalled the command: a forwarded signal, a second one, a failed ping; and a given-up wait', () => {
    const lines = written({ verbose: true, key: '/k' }, [
      { event: 'reading', etcd: 'http://h:2379' },
      { event: 'wait-cancelled', signal: 'SIGINT' },
      { event: 'child-signalled', signal: 'SIGHUP', why: 'forwarded' },
      { event: 'child-signalled', signal: 'SIGKILL', why: 'second-signal', received: 'SIGTERM' },
      { event: 'child-signalled', signal: 'SIGTERM', why: 'ping-failed', graceMs: 500 },
      { event: 'child-exited', code: 3, signal: null },
    ]);
    assert.deepEqual(lines.map(stripStamp), [
      'etcdlocker reading "/k" from http://h:2379',
      'etcdlocker SIGINT: giving up the wait',
      'etcdlocker forwarding SIGHUP to the command',
      'etcdlocker SIGTERM again: killing the command',
      "etcdlocker ping failure: SIGTERM to the command's process group, SIGKILL after 500 ms",
      'etcdlocker the command exited with code 3',
    ]);
  });
});

describe('createLog: --log-json', () => {
  it('writes every event, errors included, as one JSON object per line: event, at, pid, key, then its fields', () => {
    const before = performance.timeOrigin + performance.now();
    const lines = written({ verbose: false, logJson: true, key: '/jobs/a' }, RUN);
    const after = performance.timeOrigin + performance.now();
    assert.equal(lines.length, RUN.length);
    const records = lines.map((line) => JSON.parse(line) as LogRecord);
    records.forEach((record, i) => {
      const { at, pid, key, ...event } = record;
      assert.deepEqual(event, RUN[i]);
      assert.deepEqual(Object.keys(record).slice(0, 4), ['event', 'at', 'pid', 'key']);
      assert.equal(pid, process.pid);
      assert.equal(key, '/jobs/a');
      assert.ok(before <= at && at <= after, `at ${at} is now, on performance.timeOrigin + performance.now()`);
      if (i > 0) assert.ok(at >= records[i - 1]!.at, 'at never goes back');
    });
  });

  it('ignores -v: the same lines with or without it, and never a text line', () => {
    const events = (verbose: boolean) =>
      written({ verbose, logJson: true, key: 'k' }, RUN).map((line) => (JSON.parse(line) as LogRecord).event);
    assert.deepEqual(events(true), events(false));
    assert.deepEqual(
      events(true),
      RUN.map((e) => e.event),
    );
  });
});
