import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  check,
  childReapedBeforeNextGrant,
  grants,
  heldAgainAfterHeal,
  type HolderEvent,
  noOverlap,
  noStaleWrite,
  tokensRise,
} from '../support/checker.js';
import { type FenceAttempt, fenceCurlCommand, type FenceServer, fenceWrite, startFence } from '../support/fence.js';

const event = (kind: HolderEvent['kind']) => (holder: string, token: string, at: number) => ({
  kind,
  holder,
  token,
  at,
});
const acquired = event('acquired');
const released = event('released');
const lost = event('lost');
const childStarted = event('child-started');
const childReaped = event('child-reaped');
const write = (writer: string, token: string, at: number, verdict: FenceAttempt['verdict'] = 'accepted') => ({
  writer,
  token,
  at,
  verdict,
});

/** A clean run: a holds, loses (its child reaped), b acquires and releases; fenced writes; a's late write rejected. */
const good: HolderEvent[] = [
  acquired('a', '7', 10),
  childStarted('a', '7', 11),
  lost('a', '7', 30),
  childReaped('a', '7', 32),
  acquired('b', '12', 40),
  released('b', '12', 60),
];
const goodWrites: FenceAttempt[] = [
  write('a', '7', 15),
  write('a', '7', 20),
  write('b', '12', 45),
  write('a', '7', 50, 'rejected'),
  write('b', '12', 55),
];

describe('checker', () => {
  it('finds nothing wrong in a clean run', () => {
    assert.deepEqual(check({ events: good, writes: goodWrites, heal: { at: 35, withinMs: 10 } }), []);
  });

  it('orders grants by acquisition and ends each at its first release or loss', () => {
    assert.deepEqual(
      grants([acquired('b', '12', 40), acquired('a', '7', 10), lost('a', '7', 30), released('a', '7', 35)]),
      [
        { holder: 'a', token: '7', start: 10, end: 30, endedBy: 'lost' },
        { holder: 'b', token: '12', start: 40, end: Infinity, endedBy: undefined },
      ],
    );
  });

  it('tokens-rise: a lower or repeated token in grant order is a violation', () => {
    const lower = tokensRise([acquired('a', '12', 10), released('a', '12', 20), acquired('b', '7', 30)]);
    assert.equal(lower.length, 1);
    assert.equal(lower[0]!.property, 'tokens-rise');
    assert.match(lower[0]!.message, /b \(token 7\) was granted after a \(token 12\)/);
    assert.equal(tokensRise([acquired('a', '7', 10), acquired('b', '7', 30)]).length, 1);
    // Compared as numbers, not strings: '9' < '10'.
    assert.deepEqual(tokensRise([acquired('a', '9', 10), acquired('b', '10', 30)]), []);
  });

  it('no-overlap: a grant that starts before an earlier one ended is a violation', () => {
    const overlapping = noOverlap([acquired('a', '7', 10), acquired('b', '12', 20), lost('a', '7', 30)]);
    assert.equal(overlapping.length, 1);
    assert.equal(overlapping[0]!.property, 'no-overlap');
    assert.match(overlapping[0]!.message, /b \(token 12\) acquired the lock while a \(token 7\) still held it/);
    // Never ended: held to the end of the log.
    assert.equal(noOverlap([acquired('a', '7', 10), acquired('b', '12', 20)]).length, 1);
    // Touching is fine; so is a later grant after an earlier long one ended.
    assert.deepEqual(noOverlap([acquired('a', '7', 10), released('a', '7', 20), acquired('b', '12', 20)]), []);
  });

  it('no-stale-write: an accepted write below a token already accepted is a violation; a rejected one is not', () => {
    const stale = noStaleWrite([write('a', '7', 10), write('b', '12', 20), write('a', '7', 30)]);
    assert.equal(stale.length, 1);
    assert.equal(stale[0]!.property, 'no-stale-write');
    assert.match(stale[0]!.message, /stale write from a \(token 7\) 10 ms after b's write with the newer token 12/);
    assert.deepEqual(noStaleWrite([write('a', '7', 10), write('b', '12', 20), write('a', '7', 30, 'rejected')]), []);
    // Arrival order decides, whatever order the log is given in.
    assert.equal(noStaleWrite([write('a', '7', 30), write('b', '12', 20)]).length, 1);
  });

  it('child-reaped-before-next-grant: a child reaped after the next grant, or never, is a violation', () => {
    const late = childReapedBeforeNextGrant([
      acquired('a', '7', 10),
      childStarted('a', '7', 11),
      lost('a', '7', 30),
      acquired('b', '12', 40),
      childReaped('a', '7', 45),
    ]);
    assert.equal(late.length, 1);
    assert.equal(late[0]!.property, 'child-reaped-before-next-grant');
    assert.match(late[0]!.message, /a \(token 7\) lost the lock and its child was reaped only 5 ms after b/);
    const never = childReapedBeforeNextGrant([acquired('a', '7', 10), childStarted('a', '7', 11), lost('a', '7', 30)]);
    assert.match(never[0]!.message, /never reaped/);
    // A library worker (no child) that loses is not this check's business.
    assert.deepEqual(
      childReapedBeforeNextGrant([acquired('a', '7', 10), lost('a', '7', 30), acquired('b', '9', 40)]),
      [],
    );
  });

  it('held-again-after-heal: nobody holding within the window is a violation', () => {
    assert.equal(heldAgainAfterHeal(good, 61, 100)[0]?.property, 'held-again-after-heal');
    assert.deepEqual(heldAgainAfterHeal(good, 35, 10), []);
    // A holder that held through the fault and past the window counts.
    assert.deepEqual(heldAgainAfterHeal([acquired('a', '7', 10)], 20, 10), []);
  });

  it('check() reports every kind at once', () => {
    const bad: HolderEvent[] = [
      acquired('a', '12', 10),
      childStarted('a', '12', 11),
      acquired('b', '7', 20),
      lost('a', '12', 30),
      released('b', '7', 40),
    ];
    const properties = check({
      events: bad,
      writes: [write('a', '12', 12), write('b', '7', 25)],
      heal: { at: 1000, withinMs: 10 },
    }).map((v) => v.property);
    assert.deepEqual(properties.sort(), [
      'child-reaped-before-next-grant',
      'held-again-after-heal',
      'no-overlap',
      'no-stale-write',
      'tokens-rise',
    ]);
  });
});

describe('fence server', () => {
  let fence: FenceServer;
  before(async () => {
    fence = await startFence();
  });
  after(() => fence.close());

  it('accepts equal or higher tokens, rejects lower ones with 409, and logs every attempt in order', async () => {
    assert.deepEqual(await fenceWrite(fence.url, '7', 'a', 'one'), { status: 200, verdict: 'accepted' });
    assert.deepEqual(await fenceWrite(fence.url, '7', 'a'), { status: 200, verdict: 'accepted' });
    assert.deepEqual(await fenceWrite(fence.url, '12', 'b'), { status: 200, verdict: 'accepted' });
    assert.deepEqual(await fenceWrite(fence.url, '9', 'a'), { status: 409, verdict: 'rejected' });
    // Compared as integers, beyond 2^53 too.
    assert.deepEqual(await fenceWrite(fence.url, '9007199254740993', 'c'), { status: 200, verdict: 'accepted' });
    assert.deepEqual(await fenceWrite(fence.url, '9007199254740992', 'a'), { status: 409, verdict: 'rejected' });
    const log = fence.log();
    assert.deepEqual(
      log.map(({ token, writer, verdict, value }) => ({ token, writer, verdict, value })),
      [
        { token: '7', writer: 'a', verdict: 'accepted', value: 'one' },
        { token: '7', writer: 'a', verdict: 'accepted', value: undefined },
        { token: '12', writer: 'b', verdict: 'accepted', value: undefined },
        { token: '9', writer: 'a', verdict: 'rejected', value: undefined },
        { token: '9007199254740993', writer: 'c', verdict: 'accepted', value: undefined },
        { token: '9007199254740992', writer: 'a', verdict: 'rejected', value: undefined },
      ],
    );
    assert.ok(log.every((attempt, i) => i === 0 || attempt.at >= log[i - 1]!.at));
    assert.deepEqual(noStaleWrite(log), []);
  });

  it('answers 400 to a malformed write and does not log it', async () => {
    const before = fence.log().length;
    for (const body of ['not json', '{"token":7,"writer":"a"}', '{"token":"-1","writer":"a"}', '{"token":"1"}']) {
      const response = await fetch(`${fence.url}/write`, { method: 'POST', body });
      assert.equal(response.status, 400, body);
      await response.arrayBuffer();
    }
    assert.equal(fence.log().length, before);
  });

  it('with enforce: false, accepts every write (the negative control), and the checker sees the stale one', async () => {
    const trusting = await startFence({ enforce: false });
    try {
      await fenceWrite(trusting.url, '12', 'b');
      assert.deepEqual(await fenceWrite(trusting.url, '7', 'a'), { status: 200, verdict: 'accepted' });
      assert.equal(noStaleWrite(trusting.log())[0]?.property, 'no-stale-write');
    } finally {
      await trusting.close();
    }
  });

  it('fenceCurlCommand writes with $ETCD_LOCK_REV from a shell child; curl fails on a rejected write', async () => {
    const fresh = await startFence();
    try {
      const run = (rev: string) =>
        promisify(execFile)('sh', ['-c', fenceCurlCommand(fresh.url, 'child-a')], {
          env: { ...process.env, ETCD_LOCK_REV: rev },
        }).then(
          () => 0,
          (err: { code?: number }) => err.code ?? -1,
        );
      assert.equal(await run('20'), 0);
      assert.notEqual(await run('19'), 0);
      assert.deepEqual(
        fresh.log().map(({ token, writer, verdict }) => ({ token, writer, verdict })),
        [
          { token: '20', writer: 'child-a', verdict: 'accepted' },
          { token: '19', writer: 'child-a', verdict: 'rejected' },
        ],
      );
    } finally {
      await fresh.close();
    }
  });
});
