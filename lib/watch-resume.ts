import type { IWatchResponse, Watcher } from 'etcd3';

/**
 * Keeps an etcd3 watcher's resume point honest: where etcd3 asks etcd to start again after the connection drops.
 *
 * etcd3 1.1.2 moves it to the header revision + 1 of each response (`data`) and of the watch's creation
 * (`connected`). While etcd replays what a resumed watch missed (etcd 3.4 does so from a loop that runs every
 * 100 ms), that header is etcd's current revision, ahead of the events not delivered yet: should the connection
 * drop again then, the watch would resume after them, and they would be lost (a deleted key never reported). So,
 * after etcd3's own handlers, the resume point is put back just after the newest revision actually received: the
 * newest event, or the header of a response without events (a progress notification, which etcd sends only once
 * everything up to it is delivered), or the creation header of a watch made without a start revision.
 * spec/integration/watch-cancelled.spec.ts watches the resume point through a replay.
 *
 * `startRevision`: the watch's own, if it has one. A watcher that is not etcd3's (the locker's per-key watches,
 * served in-process) is left alone.
 */
export function keepResumePoint(watcher: Watcher, startRevision: string | undefined): void {
  const request = (watcher as unknown as { request?: { start_revision?: string | number } }).request;
  if (!request) return;
  /** Every change up to this revision has reached us; undefined until known. */
  let received = startRevision === undefined ? undefined : BigInt(startRevision) - 1n;
  const hold = () => {
    if (received !== undefined) request.start_revision = (received + 1n).toString();
  };
  watcher.on('connected', (res: { header: { revision: string } }) => {
    // A watch without a start revision starts just after its creation header; a later `connected` (a resumed
    // watch) changes nothing we received.
    received ??= BigInt(res.header.revision);
    hold();
  });
  const reached = (revision: string) => {
    const at = BigInt(revision);
    if (received === undefined || at > received) received = at;
  };
  watcher.on('data', (res: IWatchResponse) => {
    if (res.events.length === 0) reached(res.header.revision);
    else for (const event of res.events) reached(event.kv.mod_revision);
    hold();
  });
}
