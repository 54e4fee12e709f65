import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import type { Subscription } from 'rxjs';
import { campaign$ } from '../../lib/election.js';
import { leader$ } from '../../lib/election-leader.js';
import type { CampaignOptions } from '../../lib/election-options.js';
import type { ElectionState, Leader } from '../../lib/election-state.js';
import { isLockError, LockLostError } from '../../lib/errors.js';
import { etcdctl, etcdForSuite, listKeys, listLeases, uniquePrefix } from '../support/etcd.js';
import { until } from '../support/poll.js';
import { sleep } from '../support/recorder.js';

/** One candidate: every state it emitted, how it ended, and the promise from `onRelease`. */
interface Candidate {
  readonly states: ElectionState[];
  readonly subscription: Subscription;
  error: unknown;
  completed: boolean;
  released: Promise<void> | undefined;
  /** The first state of this kind (waiting for it); rejects if the stream ends first. */
  next<K extends ElectionState['kind']>(kind: K): Promise<Extract<ElectionState, { kind: K }>>;
  /** A `candidate` state with `ahead === n` (waiting for it). */
  queued(ahead: number): Promise<Extract<ElectionState, { kind: 'candidate' }>>;
}

/** Everything `leader$` emitted. */
interface Observer {
  readonly seen: Array<Leader | null>;
  readonly subscription: Subscription;
  error: unknown;
  /** Waits for an emission that `match` accepts, at or after position `from`. */
  sees(match: (leader: Leader | null) => boolean, what: string, from?: number): Promise<Leader | null>;
}

/** `etcdctl elect` as a process we started (and stop, by its handle only). */
interface EtcdctlElect {
  readonly child: ChildProcess;
  /** Lines printed so far: `key`, `value`, `key`, `value`... */
  lines(): string[];
  readonly exited: Promise<number | null>;
}

describe('campaign$ and leader$ against a real etcd', () => {
  const etcd = etcdForSuite();
  const started: ChildProcess[] = [];
  after(() => {
    for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  function run(name: string, id: string, options: CampaignOptions = {}): Candidate {
    const candidate = {
      states: [] as ElectionState[],
      error: undefined as unknown,
      completed: false,
      released: undefined as Promise<void> | undefined,
    };
    const subscription = campaign$(etcd.client, name, {
      id,
      ttl: 10,
      onRelease: (done) => void (candidate.released = done),
      ...options,
    }).subscribe({
      next: (state) => candidate.states.push(state),
      error: (err: unknown) => (candidate.error = err),
      complete: () => (candidate.completed = true),
    });
    const find = async <T extends ElectionState>(accept: (state: ElectionState) => boolean, what: string) => {
      await until(() => candidate.states.some(accept) || candidate.error !== undefined || candidate.completed, what);
      const found = candidate.states.find(accept);
      if (!found) throw new Error(`${id} ended before ${what}: ${String(candidate.error)}`);
      return found as T;
    };
    return Object.assign(candidate, {
      subscription,
      next: <K extends ElectionState['kind']>(kind: K) =>
        find<Extract<ElectionState, { kind: K }>>((state) => state.kind === kind, `${id} to be ${kind}`),
      queued: (ahead: number) =>
        find<Extract<ElectionState, { kind: 'candidate' }>>(
          (state) => state.kind === 'candidate' && state.ahead === ahead,
          `${id} to be candidate with ${ahead} ahead`,
        ),
    });
  }

  /** Candidates that run one after another: the first leads, each next one is queued behind the one before. */
  async function lineUp(name: string, ids: string[]): Promise<Candidate[]> {
    const candidates: Candidate[] = [];
    for (const [position, id] of ids.entries()) {
      const candidate = run(name, id);
      await (position === 0 ? candidate.next('leader') : candidate.queued(position));
      candidates.push(candidate);
    }
    return candidates;
  }

  function observe(name: string): Observer {
    const observer = { seen: [] as Array<Leader | null>, error: undefined as unknown };
    const subscription = leader$(etcd.client, name).subscribe({
      next: (leader) => observer.seen.push(leader),
      error: (err: unknown) => (observer.error = err),
    });
    return Object.assign(observer, {
      subscription,
      sees: async (match: (leader: Leader | null) => boolean, what: string, from = 0) => {
        await until(() => observer.seen.slice(from).some(match), `leader$ to see ${what}`);
        return observer.seen.slice(from).find(match)!;
      },
    });
  }

  function etcdctlElect(args: string[]): EtcdctlElect {
    const child = spawn(process.env['ETCDCTL_BIN'] ?? 'etcdctl', [`--endpoints=${etcd.endpoints.join(',')}`, ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.push(child);
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, lines: () => stdout.split('\n').filter((line) => line !== ''), exited };
  }

  /** No key under the election, and none of these leases left. */
  async function assertNothingLeft(name: string, leaseHexes: string[]) {
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/`), [], 'no key is left under the election');
    const leases = new Set(await listLeases(etcd.endpoints));
    for (const hex of leaseHexes) assert.ok(!leases.has(BigInt(`0x${hex}`).toString()), `lease ${hex} was revoked`);
  }

  it('the first candidate leads, with its proposal in its key; the next waits behind it', async () => {
    const name = `${uniquePrefix('election')}/first`;
    const a = run(name, 'node-a');
    const leader = await a.next('leader');
    assert.equal(a.states[0]?.kind, 'candidate');
    assert.match(leader.fencingToken, /^\d+$/);
    assert.equal(leader.leaderKey, `${name}/${leader.leaseId}`);
    const { kvs } = await etcd.client.get(leader.leaderKey).exec();
    assert.equal(kvs[0]?.value.toString(), 'node-a', 'the value is the proposal');
    assert.equal(kvs[0]?.create_revision, leader.fencingToken, 'the token is the create revision');

    const b = run(name, 'node-b');
    const waiting = await b.queued(1);
    assert.deepEqual(waiting.leader, { id: 'node-a', fencingToken: leader.fencingToken });
    await sleep(300);
    assert.ok(!b.states.some((state) => state.kind === 'leader'), 'b does not lead while a does');

    b.subscription.unsubscribe();
    a.subscription.unsubscribe();
    await Promise.all([a.released, b.released]);
    assert.equal(a.error, undefined);
    await assertNothingLeft(name, [leader.leaseId]);
  });

  it('resign() hands over: the stream completes, the next in line leads with a higher token', async () => {
    const name = `${uniquePrefix('election')}/resign`;
    const [a, b, c] = (await lineUp(name, ['a', 'b', 'c'])) as [Candidate, Candidate, Candidate];
    const first = await a.next('leader');

    const resigned = first.resign();
    assert.equal(first.resign(), resigned, 'resigning twice is the same resignation');
    await resigned;
    assert.ok(a.completed, "a's stream completed");
    assert.equal(a.error, undefined);
    assert.equal(a.states.at(-1), first, 'nothing after the resignation');

    const second = await b.next('leader');
    assert.ok(BigInt(second.fencingToken) > BigInt(first.fencingToken), 'the token rises');
    await sleep(300);
    assert.ok(!c.states.some((state) => state.kind === 'leader'), 'c waits behind b');

    await second.resign();
    const third = await c.next('leader');
    assert.ok(BigInt(third.fencingToken) > BigInt(second.fencingToken), 'the token rises again');
    await third.resign();
    assert.ok(b.completed && c.completed);
    await assertNothingLeft(name, [first.leaseId, second.leaseId, third.leaseId]);
  });

  it('a candidate withdraws by resign() or unsubscribe without disturbing the leader', async () => {
    const name = `${uniquePrefix('election')}/withdraw`;
    const [a, b, c] = (await lineUp(name, ['a', 'b', 'c'])) as [Candidate, Candidate, Candidate];
    const leader = await a.next('leader');
    const bWaiting = await b.queued(1);

    await bWaiting.resign();
    assert.ok(b.completed, "b's stream completed");
    await c.queued(1); // c re-examines its place once b, just ahead of it, has gone
    c.subscription.unsubscribe();
    await c.released;
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/`), [leader.leaderKey], 'only the leader is left');
    assert.equal(a.states.at(-1), leader, 'a still leads, undisturbed');

    await leader.resign();
    await assertNothingLeft(name, [leader.leaseId]);
  });

  it('a leader whose lease is revoked from outside emits lost and errors; the next candidate leads', async () => {
    const name = `${uniquePrefix('election')}/revoked`;
    const [a, b] = (await lineUp(name, ['a', 'b'])) as [Candidate, Candidate];
    const first = await a.next('leader');

    await etcd.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${first.leaseId}`).toString() });
    const lost = await a.next('lost');
    assert.equal(lost.fencingToken, first.fencingToken);
    assert.ok(lost.reason === 'deleted' || lost.reason === 'expired', lost.reason);
    await until(() => a.error !== undefined, 'a to error');
    assert.ok(a.error instanceof LockLostError && a.error.code === 'ETCDLOCK_LOST', String(a.error));
    assert.equal(a.error, lost.error);

    const second = await b.next('leader');
    assert.ok(BigInt(second.fencingToken) > BigInt(first.fencingToken));
    await assert.rejects(first.proclaim('too late'), { code: 'ETCDLOCK_NOT_HELD' });
    await second.resign();
    await assertNothingLeft(name, [first.leaseId, second.leaseId]);
  });

  it('a leader whose key is deleted loses (deleted); a candidate whose key is deleted errors without lost', async () => {
    const name = `${uniquePrefix('election')}/deleted`;
    const [a, b] = (await lineUp(name, ['a', 'b'])) as [Candidate, Candidate];
    const leader = await a.next('leader');
    const bKey = (await listKeys(etcd.endpoints, `${name}/`)).find((key) => key !== leader.leaderKey)!;

    await etcd.client.delete().key(bKey).exec();
    await until(() => b.error !== undefined, 'b to error');
    assert.ok(isLockError(b.error) && b.error.code === 'ETCDLOCK_LOST', String(b.error));
    assert.ok(!b.states.some((state) => state.kind === 'lost'), 'a candidate never led: no lost state');

    await etcd.client.delete().key(leader.leaderKey).exec();
    const lost = await a.next('lost');
    assert.equal(lost.reason, 'deleted');
    await Promise.all([a.released, b.released]);
    await assertNothingLeft(name, [leader.leaseId]);
  });

  it('proclaim() changes the value without a new election; leader$ sees it, the leader keeps leading', async () => {
    const name = `${uniquePrefix('election')}/proclaim`;
    const observer = observe(name);
    const a = run(name, 'http://10.0.0.1:8080');
    const leader = await a.next('leader');
    await observer.sees((seen) => seen?.id === 'http://10.0.0.1:8080', 'the first proposal');

    await leader.proclaim('http://10.0.0.2:8080');
    const updated = await observer.sees((seen) => seen?.id === 'http://10.0.0.2:8080', 'the proclaimed value');
    assert.equal(updated?.fencingToken, leader.fencingToken, 'the same leadership, the same token');
    assert.equal((await etcd.client.get(leader.leaderKey).string()) ?? '', 'http://10.0.0.2:8080');
    await sleep(300);
    assert.equal(a.states.at(-1), leader, 'our own proclaim is not mistaken for a loss');
    assert.equal(a.error, undefined);

    await assert.rejects(leader.proclaim(''), { code: 'ETCDLOCK_INVALID_ARGUMENT', message: /`value`/ });
    await leader.resign();
    await assert.rejects(leader.proclaim('after resigning'), { code: 'ETCDLOCK_NOT_HELD' });
    await observer.sees((seen) => seen === null, 'nobody');
    observer.subscription.unsubscribe();
    await assertNothingLeft(name, [leader.leaseId]);
  });

  it('an outside overwrite of the leader key that detaches it from the lease is still a loss (changed)', async () => {
    const name = `${uniquePrefix('election')}/overwrite`;
    const a = run(name, 'a');
    const leader = await a.next('leader');
    await etcd.client.put(leader.leaderKey).value('intruder').exec(); // no lease: the key would outlive ours
    const lost = await a.next('lost');
    assert.equal(lost.reason, 'changed');
    await a.released;
    await etcd.client.delete().key(leader.leaderKey).exec();
    await assertNothingLeft(name, [leader.leaseId]);
  });

  it('leader$ follows the election: nobody, a leader, the handover, nobody; it takes no lease and writes nothing', async () => {
    const name = `${uniquePrefix('election')}/observe`;
    const leasesBefore = etcd.node ? await listLeases(etcd.endpoints) : undefined;
    const observer = observe(name);
    await observer.sees((seen) => seen === null, 'nobody at first');
    if (leasesBefore) assert.deepEqual(await listLeases(etcd.endpoints), leasesBefore, 'leader$ took no lease');
    assert.deepEqual(await listKeys(etcd.endpoints, `${name}/`), [], 'leader$ wrote nothing');

    const [a, b] = (await lineUp(name, ['a', 'b'])) as [Candidate, Candidate];
    const first = await a.next('leader');
    await observer.sees((seen) => seen?.id === 'a', 'a');
    await first.resign();
    const second = await b.next('leader');
    await observer.sees((seen) => seen?.id === 'b', 'b');
    await second.resign();
    await observer.sees((seen) => seen === null, 'nobody again', 2);

    assert.deepEqual(observer.seen, [
      null,
      { id: 'a', fencingToken: first.fencingToken, leaseId: first.leaseId, leaderKey: first.leaderKey },
      { id: 'b', fencingToken: second.fencingToken, leaseId: second.leaseId, leaderKey: second.leaderKey },
      null,
    ]);
    assert.equal(observer.error, undefined);
    observer.subscription.unsubscribe();

    const late = observe(name); // a new observer starts from the present
    await late.sees(() => true, 'anything');
    assert.deepEqual(late.seen, [null]);
    late.subscription.unsubscribe();
    await assertNothingLeft(name, [first.leaseId, second.leaseId]);
  });

  it('refuses bad arguments at once, naming them', () => {
    const name = `${uniquePrefix('election')}/bad`;
    const cases: Array<[() => unknown, RegExp]> = [
      [() => campaign$(null as never, name), /`client`/],
      [() => campaign$(etcd.client, ''), /`name` to be a non-empty string, got ""/],
      [() => campaign$(etcd.client, 42 as never), /`name` to be a non-empty string, got 42/],
      [() => campaign$(etcd.client, name, { ttl: 0 }), /`ttl` to be a whole number of seconds >= 1, got 0/],
      [() => campaign$(etcd.client, name, { id: '' }), /`id` to be a non-empty string/],
      [() => campaign$(etcd.client, name, { ttl: 2, refreshInterval: 2000 }), /`refreshInterval` to be below/],
      [() => campaign$(etcd.client, name, { wait: false } as never), /Unknown option `wait`/],
      [() => campaign$(etcd.client, name, 'fast' as never), /`options` to be an object/],
      [() => leader$(etcd.client, ''), /`name` to be a non-empty string/],
      [() => leader$({} as never, name), /`client`/],
    ];
    for (const [call, message] of cases) {
      assert.throws(call, (err: unknown) => isLockError(err) && err.code === 'ETCDLOCK_INVALID_ARGUMENT');
      assert.throws(call, message);
    }
  });

  it('leader$ errors with ETCDLOCK_UNAVAILABLE when etcd cannot be read', async () => {
    const { Etcd3 } = await import('etcd3');
    const nowhere = new Etcd3({ hosts: '127.0.0.1:1', dialTimeout: 500 });
    try {
      const err = await new Promise<unknown>((resolve) => {
        leader$(nowhere, '/anything').subscribe({ error: resolve });
      });
      assert.ok(isLockError(err) && err.code === 'ETCDLOCK_UNAVAILABLE', String(err));
      assert.match(String((err as Error).message), /"\/anything"/);
    } finally {
      nowhere.close();
    }
  });

  describe('with etcdctl elect (the same keys as etcd’s own election)', () => {
    it('etcdctl leads while ours is a candidate; leader$ sees it; ours leads once etcdctl resigns', async () => {
      const name = `${uniquePrefix('election')}/ctl-leads`;
      const ctl = etcdctlElect(['elect', name, 'ctl-proposal']);
      await until(() => ctl.lines().length >= 2, 'etcdctl to lead');
      const [ctlKey, ctlValue] = ctl.lines();
      assert.ok(ctlKey?.startsWith(`${name}/`), ctlKey);
      assert.equal(ctlValue, 'ctl-proposal');

      const observer = observe(name);
      const seen = await observer.sees((leader) => leader !== null, 'etcdctl leading');
      assert.equal(seen?.id, 'ctl-proposal');
      assert.equal(seen?.leaderKey, ctlKey);

      const ours = run(name, 'ours');
      const waiting = await ours.queued(1);
      assert.equal(waiting.leader?.id, 'ctl-proposal');
      await sleep(300);
      assert.ok(!ours.states.some((state) => state.kind === 'leader'), 'ours does not lead while etcdctl does');

      ctl.child.kill('SIGINT'); // etcdctl resigns: deletes its key
      assert.equal(await ctl.exited, 0);
      const leader = await ours.next('leader');
      await observer.sees((leader) => leader?.id === 'ours', 'ours leading');
      observer.subscription.unsubscribe();
      await leader.resign();
      assert.deepEqual(await listKeys(etcd.endpoints, `${name}/`), []);
    });

    it('ours leads while etcdctl elect waits; etcdctl elect -l sees ours, its proclaim, then etcdctl', async () => {
      const name = `${uniquePrefix('election')}/ours-leads`;
      const ours = run(name, 'ours');
      const leader = await ours.next('leader');

      const watcher = etcdctlElect(['elect', '-l', name]);
      await until(() => watcher.lines().length >= 2, 'etcdctl elect -l to see our leader');
      assert.deepEqual(watcher.lines().slice(0, 2), [leader.leaderKey, 'ours']);

      const ctl = etcdctlElect(['elect', name, 'ctl-proposal']);
      await until(() => ctl.child.pid !== undefined, 'etcdctl elect to start');
      const ctlQueued = async () => (await listKeys(etcd.endpoints, `${name}/`)).length === 2;
      for (let tries = 0; !(await ctlQueued()); tries++) {
        assert.ok(tries < 200, 'etcdctl elect queued its key');
        await sleep(50);
      }
      await sleep(300);
      assert.deepEqual(ctl.lines(), [], 'etcdctl does not lead while ours does');

      await leader.proclaim('ours-v2');
      await until(() => watcher.lines().includes('ours-v2'), 'etcdctl elect -l to see the proclaim');

      await leader.resign();
      await until(() => ctl.lines().length >= 2, 'etcdctl to lead after our resignation');
      assert.equal(ctl.lines()[1], 'ctl-proposal');
      const ctlKey = ctl.lines()[0]!;
      await until(() => watcher.lines().includes(ctlKey), 'etcdctl elect -l to see etcdctl lead');
      assert.deepEqual(watcher.lines().slice(-2), [ctlKey, 'ctl-proposal']);

      ctl.child.kill('SIGINT');
      watcher.child.kill('SIGINT');
      await Promise.all([ctl.exited, watcher.exited]);
      assert.deepEqual(await listKeys(etcd.endpoints, `${name}/`), []);
      // etcdctl ends without revoking its session lease (it expires on its own); ours is gone.
      assert.ok(!(await listLeases(etcd.endpoints)).includes(BigInt(`0x${leader.leaseId}`).toString()));
    });

    it('etcdctl elect -l and leader$ agree with `etcdctl get` on who leads', async () => {
      const name = `${uniquePrefix('election')}/agree`;
      const ours = run(name, 'ours');
      const leader = await ours.next('leader');
      const got = await etcdctl(etcd.endpoints, ['get', `${name}/`, '--prefix', '--sort-by=CREATE', '--limit=1']);
      assert.deepEqual(got.stdout.trim().split('\n'), [leader.leaderKey, 'ours']);
      await leader.resign();
    });
  });
});
