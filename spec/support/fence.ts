/**
 * A fence: the protected resource of the safety tests. It accepts a write only if its fencing token is at least
 * the highest token it has accepted so far, and logs every attempt with its verdict, so that
 * the checker (`checker.ts`) can prove after a run that no late writer got through.
 *
 * It is an HTTP server so that every kind of worker can write to it: library workers with {@link fenceWrite},
 * an etcdlocker child with `curl` and `ETCD_LOCK_REV` (see {@link fenceCurlCommand}).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

/** One write attempt as the fence saw it. `at` is wall-comparable: `performance.timeOrigin + performance.now()`. */
export interface FenceAttempt {
  at: number;
  /** The fencing token, as the decimal string the writer sent. */
  token: string;
  writer: string;
  value?: string;
  verdict: 'accepted' | 'rejected';
}

/** A running fence from {@link startFence}. */
export interface FenceServer {
  /** `http://127.0.0.1:<port>`; writes go to `${url}/write`. */
  readonly url: string;
  /** Every attempt so far, in arrival order (a copy). */
  log(): FenceAttempt[];
  /** Stop listening and drop every connection. Idempotent. */
  close(): Promise<void>;
}

export interface FenceOptions {
  /**
   * `false` turns the check off: every write is accepted (and logged as such). This is the negative control's
   * fence, the resource that trusts whoever claims to hold the lock. Default `true`.
   */
  enforce?: boolean;
}

/** Milliseconds on a clock that the processes of one machine share closely enough to order their logs. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

const MAX_BODY_BYTES = 64 * 1024;

/**
 * Starts a fence on a free loopback port.
 *
 * `POST /write` with a JSON body `{ token: "<decimal>", writer: "<name>", value?: "<text>" }` answers 200 and
 * `{ verdict: "accepted" }` when `BigInt(token)` is >= the highest token accepted so far, else 409 and
 * `{ verdict: "rejected", highest }`. A malformed request answers 400 and is not logged.
 *
 * @example
 * const fence = await startFence();
 * after(() => fence.close());
 * await fenceWrite(fence.url, held.fencingToken, 'worker-a'); // { status: 200, verdict: 'accepted' }
 */
export async function startFence(options: FenceOptions = {}): Promise<FenceServer> {
  const enforce = options.enforce ?? true;
  const attempts: FenceAttempt[] = [];
  let highest: bigint | undefined;

  const reply = (res: http.ServerResponse, status: number, body: object): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/write') {
      reply(res, 404, { error: 'POST /write only' });
      return;
    }
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
      if (body.length > MAX_BODY_BYTES) req.destroy();
    });
    req.on('end', () => {
      const parsed = parseWrite(body);
      if (typeof parsed === 'string') {
        reply(res, 400, { error: parsed });
        return;
      }
      const token = BigInt(parsed.token);
      const accepted = !enforce || highest === undefined || token >= highest;
      if (accepted && (highest === undefined || token > highest)) highest = token;
      attempts.push({
        at: now(),
        token: parsed.token,
        writer: parsed.writer,
        ...(parsed.value !== undefined && { value: parsed.value }),
        verdict: accepted ? 'accepted' : 'rejected',
      });
      if (accepted) reply(res, 200, { verdict: 'accepted' });
      else reply(res, 409, { verdict: 'rejected', highest: String(highest) });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed: Promise<void> | undefined;

  return {
    url,
    log: () => attempts.map((attempt) => ({ ...attempt })),
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // fetch keeps connections alive; without this close() waits for them to time out.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

function parseWrite(body: string): { token: string; writer: string; value?: string } | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return 'the body is not JSON';
  }
  const write = value as { token?: unknown; writer?: unknown; value?: unknown } | null;
  if (typeof write !== 'object' || write === null) return 'the body is not a JSON object';
  if (typeof write.token !== 'string' || !/^\d+$/.test(write.token)) {
    return `Expected \`token\` to be a decimal string, got ${JSON.stringify(write.token)}`;
  }
  if (typeof write.writer !== 'string' || write.writer === '') {
    return `Expected \`writer\` to be a non-empty string, got ${JSON.stringify(write.writer)}`;
  }
  if (write.value !== undefined && typeof write.value !== 'string') {
    return `Expected \`value\` to be a string, got ${JSON.stringify(write.value)}`;
  }
  return { token: write.token, writer: write.writer, ...(write.value !== undefined && { value: write.value }) };
}

/** What {@link fenceWrite} got back. */
export interface FenceReply {
  status: number;
  verdict: 'accepted' | 'rejected' | 'invalid';
}

/**
 * Sends one write to the fence at `url` (from {@link FenceServer.url}). Resolves with the verdict; rejects only
 * when the fence cannot be reached.
 *
 * @example
 * const { verdict } = await fenceWrite(fence.url, held.fencingToken, 'worker-a', 'step 1');
 */
export async function fenceWrite(url: string, token: string, writer: string, value?: string): Promise<FenceReply> {
  const response = await fetch(`${url}/write`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token, writer, ...(value !== undefined && { value }) }),
  });
  await response.arrayBuffer(); // drain, so the connection can be reused or closed
  const verdict = response.status === 200 ? 'accepted' : response.status === 409 ? 'rejected' : 'invalid';
  return { status: response.status, verdict };
}

/**
 * A shell command line for an etcdlocker child to make one fenced write with its `ETCD_LOCK_REV`, through `curl`
 * (present on the CI images; check with `command -v curl`). Its exit status is 0 only when the write was accepted.
 *
 * @example
 * startLocker([..., '--', 'sh', '-c', fenceCurlCommand(fence.url, 'child-a')]);
 */
export function fenceCurlCommand(url: string, writer: string): string {
  // Kept to names that need no shell quoting, so the command stays readable in a test's log.
  if (!/^[\w.-]+$/.test(writer))
    throw new TypeError(`Expected \`writer\` to match [\\w.-]+, got ${JSON.stringify(writer)}`);
  const body = `{"token":"'"$ETCD_LOCK_REV"'","writer":"${writer}"}`;
  return `curl -fsS -o /dev/null -X POST -H 'content-type: application/json' --data '${body}' '${url}/write'`;
}
