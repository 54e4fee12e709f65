import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

describe('npm run demo', () => {
  it('starts its own etcd, serves three contenders in FIFO turns with rising tokens, and leaves nothing', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], {
      env: { ...process.env, ETCD_ENDPOINTS: '' },
      timeout: 60_000,
    });
    const grants = /grants in order \(holder#token\): (.*)/.exec(stdout)?.[1]?.split(' ') ?? [];
    assert.deepEqual(
      grants.map((g) => g.split('#')[0]),
      ['alice', 'bob', 'carol', 'alice', 'bob', 'carol'],
      stdout,
    );
    const tokens = grants.map((g) => BigInt(g.split('#')[1] ?? '0'));
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `tokens rise: ${grants.join(' ')}`);
    assert.match(stdout, /throwaway, pid \d+/);
    assert.match(stdout, /keys left under \S+: 0$/m);
  });
});
