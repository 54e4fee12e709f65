/**
 * The documentation's examples, run against a real etcd: README.md and docs/*.md.
 *
 * Convention: a fenced block tagged exactly ```ts whose nearest non-blank line above is `<!-- run -->` is a
 * complete program. It is type-checked with the project's compiler options, then run with `node --import tsx`
 * and must exit with 0 within a minute, leaving no key and no lease behind. What it claims to print is checked
 * too: a line ending in `// => text` promises an output line ending in `text`, in the order of the claims. A ```ts block that cannot run on its
 * own is marked `<!-- fragment -->` instead; an unmarked ```ts block fails the suite, so none is skipped silently.
 *
 * Before a block runs, `from 'etcd-lock'` is pointed at lib/index.ts, and every string literal that starts with
 * `/` (an etcd key such as '/jobs/reindex') gets a prefix of its own, so blocks cannot see each other's keys, even
 * on a shared cluster, and "nothing left behind" is one range read. Examples connect with
 * `process.env.ETCD_ENDPOINTS`, which this suite sets to the etcd it started.
 *
 * The blocks are written under node_modules/.cache/ (ignored by git, ESLint and Prettier), where `etcd3`, `rxjs`
 * and the other dependencies resolve as they would in a user's project.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { listKeys, listLeases, uniquePrefix, useEtcd } from '../support/etcd.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORK_DIR = path.join(ROOT, 'node_modules', '.cache', 'etcd-lock-docs', `run-${process.pid}`);
const RUN_TIMEOUT_MS = 60_000;

interface Block {
  /** `README.md:42`: where the opening fence is. */
  where: string;
  info: string;
  marker: 'run' | 'fragment' | undefined;
  code: string;
}

/** The fenced code blocks of a Markdown file, with the marker comment above each (if any). */
function codeBlocks(file: string): Block[] {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([^`\s]*)/.exec(lines[i] ?? '');
    if (!open) continue;
    const [, indent = '', fence = '```', info = ''] = open;
    let above = i - 1;
    while (above >= 0 && lines[above]?.trim() === '') above--;
    const comment = /^<!--\s*(run|fragment)\s*-->$/.exec(lines[above]?.trim() ?? '')?.[1];
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !(lines[j]?.trim().startsWith(fence[0]!.repeat(fence.length)) ?? false)) {
      const line = lines[j] ?? '';
      body.push(line.startsWith(indent) ? line.slice(indent.length) : line.trimStart());
      j++;
    }
    blocks.push({
      where: `${file}:${i + 1}`,
      info,
      marker: comment === 'run' || comment === 'fragment' ? comment : undefined,
      code: body.join('\n') + '\n',
    });
    i = j;
  }
  return blocks;
}

/** The Markdown lines outside fenced code blocks, with their 1-based numbers. */
function prose(file: string): Array<{ line: number; text: string }> {
  const result: Array<{ line: number; text: string }> = [];
  let fence: string | undefined;
  readFileSync(path.join(ROOT, file), 'utf8')
    .split('\n')
    .forEach((text, i) => {
      const marker = /^\s*(`{3,}|~{3,})/.exec(text)?.[1];
      if (fence === undefined && marker) fence = marker;
      else if (fence !== undefined && marker?.startsWith(fence)) fence = undefined;
      else if (fence === undefined) result.push({ line: i + 1, text });
    });
  return result;
}

/** The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to hyphens. */
function headingSlugs(file: string): Set<string> {
  const slugs = new Set<string>();
  for (const { text } of prose(file)) {
    const heading = /^#{1,6}\s+(.*)$/.exec(text)?.[1];
    if (heading === undefined) continue;
    const slug = heading
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    let unique = slug;
    for (let n = 1; slugs.has(unique); n++) unique = `${slug}-${n}`;
    slugs.add(unique);
  }
  return slugs;
}

/** The targets of a file's Markdown links, outside code. */
function links(file: string): Array<{ line: number; target: string }> {
  return prose(file).flatMap(({ line, text }) =>
    [...text.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g)].map((match) => ({ line, target: match[1]! })),
  );
}

const docFiles = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];
const tsBlocks = docFiles.flatMap(codeBlocks).filter((block) => block.info === 'ts');
const runnable = tsBlocks.filter((block) => block.marker === 'run');

/** The block as a program: the package import pointed at the sources, and etcd keys moved under `prefix`. */
function prepare(code: string, prefix: string, fileDir: string): string {
  const lib = path
    .relative(fileDir, path.join(ROOT, 'lib', 'index.js'))
    .split(path.sep)
    .join('/');
  return code
    .replace(/(from\s+|import\(\s*)(['"])etcd-lock\2/g, `$1$2${lib}$2`)
    .replace(/(['"`])\/(?=[\w.-])/g, `$1${prefix}/`);
}

function fileName(index: number): string {
  return `block-${String(index + 1).padStart(2, '0')}.ts`;
}

function run(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; output: string; stdout: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...args, file],
      { cwd: WORK_DIR, env, timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 10 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        const output = `${stdout}${stderr}${error?.killed ? '\n(killed after the time limit)' : ''}`;
        resolve({ code, output, stdout });
      },
    );
  });
}

/** The output an example promises with `// => text` comments, in order. */
function claims(code: string): string[] {
  return code.split('\n').flatMap((line) => /\/\/ => (.+)$/.exec(line)?.[1]?.trim() ?? []);
}

/** Each claim must end an output line, after the line that met the claim before it. */
function assertClaims(block: Block, stdout: string): void {
  const lines = stdout.split('\n').map((line) => line.trimEnd());
  let from = 0;
  for (const claim of claims(block.code)) {
    const found = lines.findIndex((line, i) => i >= from && line.endsWith(claim));
    assert.ok(found >= 0, `${block.where} promised a line ending in ${JSON.stringify(claim)}; it printed:\n${stdout}`);
    from = found + 1;
  }
}

describe('the examples in README.md and docs/*.md', () => {
  let etcd: Awaited<ReturnType<typeof useEtcd>>;
  const prefixes = runnable.map(() => uniquePrefix('docs'));

  before(async () => {
    etcd = await useEtcd();
    await rm(WORK_DIR, { recursive: true, force: true });
    await mkdir(WORK_DIR, { recursive: true });
    // node_modules is a package boundary: without this the blocks would load as CommonJS (no top-level await).
    await writeFile(path.join(WORK_DIR, 'package.json'), '{ "private": true, "type": "module" }\n');
    await Promise.all(
      runnable.map((block, i) =>
        writeFile(
          path.join(WORK_DIR, fileName(i)),
          `// ${block.where}\n${prepare(block.code, prefixes[i]!, WORK_DIR)}`,
        ),
      ),
    );
  });
  after(async () => {
    await rm(WORK_DIR, { recursive: true, force: true });
    await etcd?.stop();
  });

  it('README.md starts with the two set-up commands, demo first', () => {
    const lines = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n');
    assert.match(lines[0] ?? '', /^# /, 'a title first');
    const firstBlock = codeBlocks('README.md')[0];
    const firstContent = lines.slice(1).findIndex((line) => line.trim() !== '') + 2;
    assert.equal(firstBlock?.where, `README.md:${firstContent}`, 'the first thing after the title is a code block');
    const commands = firstBlock.code.split('\n').map((line) => line.replace(/#.*/, '').trim());
    assert.deepEqual(commands.filter(Boolean), ['npm install && npm run demo', 'npm test']);
  });

  it('marks every ts block as <!-- run --> or <!-- fragment -->, and runs some in every file that has them', () => {
    const unmarked = tsBlocks.filter((block) => block.marker === undefined).map((block) => block.where);
    assert.deepEqual(unmarked, [], 'ts blocks with neither marker');
    assert.ok(runnable.length >= 20, `only ${runnable.length} runnable examples`);
    for (const file of docFiles) {
      const inFile = (block: Block) => block.where.startsWith(`${file}:`);
      if (!tsBlocks.some(inFile)) continue; // a page without TypeScript (say, about the CLI)
      assert.ok(runnable.some(inFile), `${file} has ts blocks, but none that runs`);
    }
  });

  it('links only to files and headings that exist', () => {
    const broken: string[] = [];
    for (const file of docFiles) {
      for (const { line, target } of links(file)) {
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
        const [pathPart = '', anchor] = target.split('#');
        const linked = pathPart === '' ? file : path.posix.join(path.posix.dirname(file), pathPart);
        if (!existsSync(path.join(ROOT, linked))) broken.push(`${file}:${line}: ${target} (no such file)`);
        else if (anchor !== undefined && linked.endsWith('.md') && !headingSlugs(linked).has(anchor)) {
          broken.push(`${file}:${line}: ${target} (no such heading)`);
        }
      }
    }
    assert.deepEqual(broken, []);
  });

  it('type-checks every runnable example with the project compiler options', async () => {
    const tsconfig = {
      extends: path.join(ROOT, 'tsconfig.json'),
      compilerOptions: { noEmit: true },
      files: runnable.map((_, i) => fileName(i)),
      include: [],
    };
    await writeFile(path.join(WORK_DIR, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const { code, output } = await run('tsconfig.json', [tsc, '-p'], process.env);
    // Point at the Markdown line of each error rather than at the generated file (whose line 1 is a comment).
    const located = output.replace(/block-(\d+)\.ts\((\d+),/g, (_, n: string, line: string) => {
      const [file = '?', fenceLine = '0'] = runnable[Number(n) - 1]?.where.split(':') ?? [];
      return `${file}(${Number(fenceLine) + Number(line) - 1},`;
    });
    assert.equal(code, 0, located);
  });

  runnable.forEach((block, i) => {
    it(`runs ${block.where} and leaves nothing behind`, { timeout: RUN_TIMEOUT_MS + 30_000 }, async () => {
      const leasesBefore = etcd.node ? new Set(await listLeases(etcd.endpoints)) : undefined;
      const env = { ...process.env, ETCD_ENDPOINTS: etcd.endpoints.join(',') };
      const { code, output, stdout } = await run(fileName(i), ['--import', 'tsx'], env);
      assert.equal(code, 0, `${block.where} exited with ${code}:\n${output}`);
      assertClaims(block, stdout);
      assert.deepEqual(await listKeys(etcd.endpoints, `${prefixes[i]}/`), [], `${block.where} left keys behind`);
      if (leasesBefore) {
        // Our own etcd, where only these examples run: any new lease is one the example left behind.
        const leftover = (await listLeases(etcd.endpoints)).filter((lease) => !leasesBefore.has(lease));
        assert.deepEqual(leftover, [], `${block.where} left leases behind:\n${output}`);
      }
    });
  });
});
