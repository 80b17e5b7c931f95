/**
 * Every TypeScript block of the Markdown docs type-checks against the sources: a name a snippet
 * uses and never defines (a `token`, a `draw`, a `requireAdmin`) fails here. The package's
 * entries resolve to their sources; `app` (a Hono app) and `hub` (an agent hub) are the two
 * names a snippet may take from the page's first example without defining them. Blocks marked
 * `<!-- example: NAME -->` are left to test/package.test.ts, which runs them from the packed
 * package; blocks for Deno's own types are left to `deno check`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { markdownFiles, readMarkdown } from './docs-tables.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The package's entries, as a snippet imports them, and the sources they are built from. */
function entries(): Record<string, string> {
  const { name, exports } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    name: string;
    exports: Record<string, string | { import: string }>;
  };
  return Object.fromEntries(
    Object.entries(exports).flatMap(([entry, target]) =>
      typeof target === 'object'
        ? [[`${name}${entry.slice(1)}`, join(ROOT, target.import.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts'))]]
        : [],
    ),
  );
}

/** What a snippet may use without defining it: the app and hub of the page's first example. */
const PRELUDE = `import type { Hono as PreludeHono } from 'hono';
import type { AgentHub as PreludeHub } from 'hono-agent-ws';
declare const app: PreludeHono;
declare const hub: PreludeHub;
`;

/** One TypeScript block: where it is and its code. */
interface Snippet {
  readonly page: string;
  readonly line: number;
  readonly code: string;
}

/** The `ts` blocks of every page that no test runs otherwise. */
function snippets(): Snippet[] {
  const found: Snippet[] = [];
  // docs/engines/ shows each bridge as the one line added to an engine's own call, in that
  // engine's context; its pages are left out here.
  for (const page of markdownFiles().filter((file) => !file.startsWith('docs/engines/'))) {
    const text = readMarkdown(page);
    for (const match of text.matchAll(/(<!-- example: [\w-]+ -->\n)?^```ts\n([\s\S]*?)^```/gm)) {
      const code = match[2] as string;
      if (match[1] || /\bDeno\./.test(code)) continue;
      found.push({ page, line: text.slice(0, match.index).split('\n').length + 1, code });
    }
  }
  return found;
}

describe('the TypeScript blocks of the docs', () => {
  const dir = join(ROOT, '.cache', `doc-snippets-${process.pid}`);
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('type-check against the sources, defining every name they use', { timeout: 180_000 }, () => {
    const blocks = snippets();
    assert.ok(blocks.length >= 8, `only ${blocks.length} blocks found`);
    mkdirSync(dir, { recursive: true });
    const files = blocks.map((block, n) => {
      const file = `${block.page.replace(/\W+/g, '-')}-${block.line}-${n}.ts`;
      const definesContext = /^(?:const|let) (?:app|hub)\b/m.test(block.code);
      writeFileSync(join(dir, file), `${definesContext ? '' : PRELUDE}${block.code}\nexport {};\n`);
      return { file, block };
    });
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: join(ROOT, 'tsconfig.json'),
        compilerOptions: {
          paths: Object.fromEntries(Object.entries(entries()).map(([entry, source]) => [entry, [source]])),
          noUnusedLocals: false,
        },
        include: ['*.ts'],
        exclude: [],
      }),
    );
    const run = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', dir], {
      encoding: 'utf8',
      cwd: ROOT,
    });
    // Errors named by the page and line of their block.
    const errors = `${run.stdout}${run.stderr}`
      .split('\n')
      .filter((line) => line.includes('error TS'))
      .map((line) => {
        const hit = files.find(({ file }) => line.includes(file));
        return hit ? `${hit.block.page}:${hit.block.line}: ${line.slice(line.indexOf('error TS'))}` : line;
      });
    assert.deepEqual(errors, []);
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
  });
});
