/**
 * The library as users run it: the JavaScript that `npm run build` (tsc) writes to dist/lib, which `npm run bench`
 * builds first. The benchmark's own code runs through tsx, but lib/ must not be measured that way: tsx compiles
 * with esbuild's `keepNames`, which wraps every function expression in `__name(fn, 'name')`, defining an own
 * `name` property on each closure (about 250 bytes more per closure in V8 on Node 20). lib creates several such
 * closures per held lock, so 10,000 locks on one Locker, taken through tsx, measured ~54 MB of heap and ~2-2.7 s
 * against ~36 MB and ~1.3-1.4 s for the built JavaScript (bench/notes.md).
 *
 * Types come from the sources; values from dist/lib, which must be newer than every file in lib/ (else it would
 * measure other code than this tree's).
 */
import { readdirSync, statSync } from 'node:fs';

const SOURCES = new URL('../lib/', import.meta.url);
const BUILT = new URL('../dist/lib/', import.meta.url);

const newestSource = Math.max(
  ...readdirSync(SOURCES)
    .filter((file) => file.endsWith('.ts'))
    .map((file) => statSync(new URL(file, SOURCES)).mtimeMs),
);

async function built<T>(module: string): Promise<T> {
  const file = new URL(`${module}.js`, BUILT);
  const builtAt = statSync(file, { throwIfNoEntry: false })?.mtimeMs;
  if (builtAt === undefined || builtAt < newestSource) {
    throw new Error(`dist/lib/${module}.js is missing or older than lib/: run \`npm run build\` first`);
  }
  return (await import(file.href)) as T;
}

export const { lock$ } = await built<typeof import('../lib/lock-stream.js')>('lock-stream');
export const { isHeld } = await built<typeof import('../lib/state.js')>('state');
export const { Lock } = await built<typeof import('../lib/facade.js')>('facade');
export const { createLocker } = await built<typeof import('../lib/locker.js')>('locker');
/** Not public: for the scale comparison row that wires the protocol by hand (locks/session-mutex.ts). */
export const { contend$ } = await built<typeof import('../lib/mutex.js')>('mutex');
export const { session$ } = await built<typeof import('../lib/session.js')>('session');
