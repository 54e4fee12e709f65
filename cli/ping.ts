/**
 * `-n`: the IPC ping cadence of etcd-lock 1.x, as a timer stream. Every interval the child gets
 * `{ping: x}` and must answer `{pong: x}` within the time limit; the stream errors with a
 * {@link PingError} on a wrong answer, a late or missing one, or a closed channel.
 */
import { randomInt } from 'node:crypto';
import {
  asyncScheduler,
  defer,
  filter,
  first,
  map,
  merge,
  Observable,
  repeat,
  type SchedulerLike,
  take,
  throwError,
  timeout,
  timer,
} from 'rxjs';

/** What the child must do for each ping. */
export interface PingPeer {
  readonly connected: boolean;
  send(message: unknown, callback: (error: Error | null) => void): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
}

export type PingProblem = 'timeout' | 'wrong-answer' | 'disconnected';

export class PingError extends Error {
  override readonly name = 'PingError';
  constructor(
    readonly problem: PingProblem,
    message: string,
  ) {
    super(message);
  }
}

export interface PingOptions {
  /** Between an answer and the next ping (1.x: the lock's refresh period). */
  intervalMs: number;
  /** How long the child has to answer each ping (1.x: the TTL). */
  timeoutMs: number;
  scheduler?: SchedulerLike;
  /** The ping value; random by default. */
  nextValue?: () => number;
}

/** Pings `peer` at once and then every `intervalMs` after each answer; emits each round trip's value. */
export function ping$(peer: PingPeer, options: PingOptions): Observable<number> {
  const scheduler = options.scheduler ?? asyncScheduler;
  const nextValue = options.nextValue ?? (() => randomInt(1, 2 ** 47));
  // Not fromEvent(): a ChildProcess emits 'message' with two arguments (message, sendHandle), and fromEvent
  // then emits the pair as an array, which is never a pong.
  const messages$ = new Observable<unknown>((subscriber) => {
    const listener = (message: unknown) => subscriber.next(message);
    peer.on('message', listener);
    return () => peer.off('message', listener);
  });
  const one$ = defer(() => {
    const value = nextValue();
    if (!peer.connected) return throwError(() => new PingError('disconnected', 'the IPC channel is closed'));
    const failed$ = new Observable<never>((subscriber) => {
      peer.send({ ping: value }, (error) => {
        if (error) subscriber.error(new PingError('disconnected', `could not send a ping: ${error.message}`));
      });
    });
    const answer$ = messages$.pipe(
      filter(isPong),
      first(),
      map((message) => {
        if (message.pong !== value) {
          throw new PingError('wrong-answer', `sent {ping: ${value}}, got ${JSON.stringify(message)}`);
        }
        return value;
      }),
    );
    // failed$ is subscribed second, so the answer listener is in place before the ping leaves.
    return merge(answer$, failed$).pipe(
      take(1),
      timeout({
        first: options.timeoutMs,
        scheduler,
        with: () =>
          throwError(() => new PingError('timeout', `no answer to {ping: ${value}} within ${options.timeoutMs} ms`)),
      }),
    );
  });
  return one$.pipe(repeat({ delay: () => timer(options.intervalMs, scheduler) }));
}

function isPong(message: unknown): message is { pong: unknown } {
  return typeof message === 'object' && message !== null && 'pong' in message;
}
