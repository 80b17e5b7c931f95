/**
 * `npm run docs` produces two self-contained pages: the WebSocket API (asyncapi.yaml) naming
 * every message, and the HTTP API (openapi.yaml) naming every operation. The last test opens
 * the WebSocket page at 1280 px in Debian's chromium, and is skipped where there is none.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';
import { ERROR_CODES, HTTP_ERROR_CODES } from '../plugin/schemas.ts';
import { ERROR_KINDS } from '../plugin/stats.ts';
import { CHROMIUM_PATH, launchChromium } from '../scripts/chromium.ts';
import { loadContract } from './contract.ts';
import { HTTP_PAGE_NAME, writeDocs } from './docs.ts';
import { docsView } from './docs-page.ts';
import {
  GENERATED_TABLES,
  hubOptionProblems,
  markdownFiles,
  parseStatedDefault,
  readMarkdown,
  renderTables,
  statedDefault,
  tableNames,
} from './docs-tables.ts';

/** Inline schemas (not `$ref`s) in a document that a model generator would make a type of. */
function untitledInlineSchemas(node: unknown, path = ''): string[] {
  if (Array.isArray(node)) return node.flatMap((item, index) => untitledInlineSchemas(item, `${path}/${index}`));
  if (typeof node !== 'object' || node === null) return [];
  const schema = node as Record<string, unknown>;
  const typed =
    schema.type === 'object' ||
    Array.isArray(schema.anyOf) ||
    Array.isArray(schema.oneOf) ||
    (Array.isArray(schema.enum) && schema.enum.length > 1);
  const own = path.includes('/schemas/') && typed && typeof schema.title !== 'string' ? [path] : [];
  return [
    ...own,
    ...Object.entries(schema).flatMap(([key, value]) =>
      key === 'examples' ? [] : untitledInlineSchemas(value, `${path}/${key}`),
    ),
  ];
}

describe('npm run docs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agent-ws-docs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one self-contained HTML page, in seconds, that names every message', () => {
    const started = Date.now();
    const path = writeDocs(pathToFileURL(join(dir, 'index.html')));
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 10_000, `took ${elapsed} ms`);
    const html = readFileSync(path, 'utf8');

    assert.match(html, /^<!doctype html>/);
    assert.ok(html.includes('AsyncApiStandalone.render('), 'renders with the standalone bundle');
    assert.ok(html.length > 1_000_000, 'the bundle is inlined');
    // Offline: no element of the page itself loads anything from elsewhere (the inlined code
    // mentions such elements in strings, so it is cut out first).
    const markup = html.replace(/<(script|style)>[\s\S]*?<\/\1>/g, '');
    assert.doesNotMatch(markup, /\b(src|href)=/i);
    assert.match(markup, /<div id="asyncapi">/);
    // Two inline scripts, the bundle and the call: nothing inside closes a script early or
    // opens an HTML comment that would hide the real end tag.
    assert.equal(html.match(/<\/script>/g)?.length, 2);
    assert.ok(!html.includes('<!--'));

    const { document } = loadContract();
    for (const [id, message] of Object.entries<{ name: string; title: string }>(document.components.messages)) {
      assert.ok(html.includes(`name: ${message.name}`), `names message ${id}`);
      assert.ok(html.includes(`title: ${message.title}`), `titles message ${id}`);
    }
    // The component's narrow layout (sidebar folded into a floating button) is overridden from
    // 1024 px, and its prose style no longer draws backticks around inline code.
    assert.match(html, /@media \(min-width:1024px\)\{\s*\.aui-root \.container\\:xl \.burger-menu\{display:none\}/);
    assert.ok(html.includes('.aui-root .prose code::before,.aui-root .prose code::after{content:none}'));
    assert.doesNotMatch(html, /AnonymousSchema/);
  });

  it('shows the spec without plain-text summaries in Markdown or descriptions said twice', () => {
    const { document } = loadContract();
    const view = docsView(document as Record<string, unknown>) as typeof document;
    // The component prints `summary` as plain text: none that is shown may carry Markdown.
    for (const [id, operation] of Object.entries<{ summary?: string; description?: string }>(view.operations)) {
      assert.ok(!operation.summary?.includes('`'), `operation ${id} summary shows backticks`);
      assert.ok(operation.description, `operation ${id} keeps its text as Markdown`);
    }
    for (const [id, message] of Object.entries<{
      summary?: string;
      description: string;
      payload: Record<string, unknown>;
    }>(view.components.messages)) {
      assert.equal(message.summary, undefined, `message ${id}: summary repeats the description`);
      assert.notEqual(
        message.payload.description,
        message.description,
        `message ${id}: payload repeats the description`,
      );
    }
    // The committed spec is untouched.
    assert.ok(
      Object.values<{ summary?: string }>(document.operations).some((operation) => operation.summary?.includes('`')),
    );
  });

  it('writes the HTTP page from openapi.yaml: every operation, response and schema, no script', () => {
    const path = writeDocs(pathToFileURL(join(dir, 'index.html')));
    const html = readFileSync(join(path, '..', HTTP_PAGE_NAME), 'utf8');
    const openapi = parse(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')) as {
      paths: Record<string, Record<string, { operationId: string; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, unknown> };
    };
    assert.match(html, /^<!doctype html>/);
    assert.doesNotMatch(html, /<script|\bsrc=/i);
    // Links stay on the page or go to the WebSocket page next to it.
    for (const [, href] of html.matchAll(/href="([^"]*)"/g)) assert.match(href!, /^(#[\w-]+|index\.html)$/);
    let operations = 0;
    for (const [path, item] of Object.entries(openapi.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        operations++;
        const section = html
          .split(`<section class="operation" id="op-${operation.operationId}">`)[1]
          ?.split('</section>')[0];
        assert.ok(section, `operation ${operation.operationId}`);
        assert.ok(section.includes(`>${method.toUpperCase()}</span> <code>${path}</code>`), `${method} ${path}`);
        for (const status of Object.keys(operation.responses))
          assert.ok(section.includes(`>${status}</td>`), `${operation.operationId} ${status}`);
      }
    }
    assert.ok(operations >= 4);
    for (const name of Object.keys(openapi.components.schemas))
      assert.ok(html.includes(`id="schema-${name}"`), `schema ${name}`);
    // Markdown rendered: no backtick survives in the text.
    assert.ok(!html.replace(/<[^>]*>/g, '').includes('`'), 'literal backticks in the HTTP page');
    assert.ok(html.includes('<code>invalid_query</code>'));
    assert.doesNotMatch(html, /AnonymousSchema/);
  });

  it('titles every inline object, union and enum schema of both specs, for model generators', () => {
    for (const file of ['asyncapi.yaml', 'openapi.yaml']) {
      const text = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
      assert.doesNotMatch(text, /AnonymousSchema/);
      assert.deepEqual(untitledInlineSchemas(parse(text)), [], file);
    }
    const asyncapi = readFileSync(new URL('../asyncapi.yaml', import.meta.url), 'utf8');
    assert.ok(asyncapi.includes('title: BatchEntryStatusUpdate'));
  });

  it('renders at 1280 px with the sidebar, Markdown, open payloads, and no request', {
    skip: !existsSync(CHROMIUM_PATH) && `no chromium at ${CHROMIUM_PATH}`,
  }, async () => {
    const path = writeDocs(pathToFileURL(join(dir, 'index.html')));
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const external: string[] = [];
      page.on('request', (request) => {
        if (!/^(file|data|blob|about):/.test(request.url())) external.push(request.url());
      });
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(pathToFileURL(path).href);
      await page.getByText('connection_established').first().waitFor({ state: 'attached', timeout: 20_000 });
      await page.waitForFunction(() => document.querySelectorAll('[data-docs-opened]').length > 0, undefined, {
        timeout: 10_000,
      });
      await page.waitForTimeout(300);
      const state = await page.evaluate(() => {
        const sidebar = document.querySelector('.sidebar');
        const burger = document.querySelector('.burger-menu');
        const root = document.getElementById('asyncapi')!;
        // Backticks as text, or drawn around code by a stylesheet.
        const drawn = [...root.querySelectorAll('code')].filter((code) =>
          ['::before', '::after'].some((pseudo) => getComputedStyle(code, pseudo).content.includes('`')),
        ).length;
        const payloads = [...root.querySelectorAll('[data-docs-opened]')];
        return {
          sidebar: sidebar ? sidebar.getBoundingClientRect().width : 0,
          sidebarShown: sidebar ? getComputedStyle(sidebar).display !== 'none' : false,
          burger: burger ? getComputedStyle(burger).display : 'none',
          backticks: root.textContent.includes('`'),
          drawn,
          anonymous: /AnonymousSchema/.test(root.textContent),
          payloads: payloads.length,
          closed: payloads.filter(
            (button) => !button.closest('.justify-between')?.textContent?.includes('Collapse all'),
          ).length,
          links: [...root.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')),
        };
      });
      assert.ok(state.sidebarShown && state.sidebar >= 200, `sidebar at 1280 px: ${JSON.stringify(state)}`);
      assert.equal(state.burger, 'none');
      assert.equal(state.backticks, false, 'literal backticks in the rendered text');
      assert.equal(state.drawn, 0, 'backticks drawn around inline code');
      assert.equal(state.anonymous, false);
      // Each message shows its payload twice: under its operation and in the Messages section.
      const messages = Object.keys(loadContract().document.components.messages).length;
      assert.ok(state.payloads >= 2 * messages, `payloads opened: ${state.payloads} of ${2 * messages}`);
      assert.equal(state.closed, 0, 'a payload is still closed');
      assert.ok(state.links.includes(HTTP_PAGE_NAME), 'links to the HTTP page');
      assert.deepEqual(external, []);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});

/** A Markdown text without its fenced code blocks and inline code. */
const prose = (text: string) => text.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

/** The anchors of a Markdown page's headings, with GitHub's `-1`, `-2` for repeats. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const found = new Set<string>();
  for (const [, heading] of text.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6} (.+)$/gm)) {
    const base = slug(heading as string);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.add(count === 0 ? base : `${base}-${count}`);
  }
  return found;
}

/** The rows of the first Markdown table after `heading` on a page, as trimmed cells. */
function tableAfter(text: string, heading: string): string[][] {
  const from = text.indexOf(`\n${heading}\n`);
  assert.ok(from >= 0, `no heading ${heading}`);
  const lines = text.slice(from).split('\n');
  const start = lines.findIndex((line) => line.startsWith('| '));
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim()),
    );
  }
  return rows;
}

/** The `code` spans of a text. */
const codes = (text: string) => [...text.matchAll(/`([^`]+)`/g)].map((match) => match[1] as string);

describe('the Markdown docs', () => {
  it('hold every generated table as the code writes it now: run npm run docs', () => {
    for (const file of markdownFiles()) {
      const text = readMarkdown(file);
      assert.equal(text, renderTables(text, file), `${file} is stale: run npm run docs`);
    }
  });

  it('use every generated table, each on one page', () => {
    const used = markdownFiles().flatMap((file) => tableNames(readMarkdown(file)));
    assert.deepEqual([...used].sort(), Object.keys(GENERATED_TABLES).sort());
  });

  it("state in the hub options' JSDoc the defaults of the schema", () => {
    assert.deepEqual(hubOptionProblems(), []);
    assert.deepEqual(statedDefault('Bytes of history. Default 64 MiB.'), {
      value: '64 MiB',
      rest: 'Bytes of history.',
    });
    assert.equal(parseStatedDefault('1 hour'), 3_600_000);
    assert.equal(parseStatedDefault('512 KiB'), 512 * 1024);
    assert.equal(statedDefault('Ms (default 500).').value, '500');
    assert.equal(statedDefault('Ms. Default 10000: because.').rest, 'Ms. Default 10000: because.');
  });

  it('answer every error kind, error frame code and HTTP error code in the bad input table', () => {
    const rows = tableAfter(readMarkdown('docs/protocol.md'), '## Answers to bad input');
    const counted = new Set(rows.flatMap(([, , kinds]) => codes(kinds ?? '')));
    const answers = new Set(rows.flatMap(([, answer]) => codes(answer ?? '')));
    for (const kind of ERROR_KINDS) assert.ok(counted.has(kind), `error kind ${kind} is not in the table`);
    for (const kind of counted)
      assert.ok((ERROR_KINDS as readonly string[]).includes(kind), `${kind} is no error kind`);
    for (const code of [...ERROR_CODES, ...HTTP_ERROR_CODES])
      assert.ok(answers.has(code), `code ${code} is not answered`);
  });

  it('name every entry of package.json in the README and in the entries table, with what it needs', () => {
    const exports = Object.keys(
      (JSON.parse(readMarkdown('package.json')) as { exports: Record<string, unknown> }).exports,
    ).filter((entry) => entry !== './package.json');
    const readme = readMarkdown('README.md');
    const rows = tableAfter(readMarkdown('docs/api.md'), '## Entries and peer dependencies');
    const listed = new Set(rows.flatMap(([entry]) => codes(entry ?? '')));
    for (const entry of exports) {
      const name = entry === '.' ? 'hono-agent-ws' : `hono-agent-ws/${entry.slice(2)}`;
      assert.ok(listed.has(name), `docs/api.md's entries table has no ${name}`);
      const short = entry === '.' ? '`hono-agent-ws`' : `\`/${entry.slice(2)}\``;
      assert.ok(readme.includes(`\`${name}\``) || readme.includes(short), `README.md does not name ${name}`);
    }
    for (const row of rows) assert.ok(row[2], `no needs for ${row[0]}`);
  });

  it('link only to files and headings that exist', () => {
    const root = new URL('../', import.meta.url);
    const broken: string[] = [];
    for (const file of markdownFiles()) {
      const text = readMarkdown(file);
      for (const [, target] of prose(text).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target as string)) continue;
        const [path, anchor] = (target as string).split('#') as [string, string | undefined];
        const url = path === '' ? new URL(file, root) : new URL(path, new URL(file, root));
        if (!existsSync(url)) {
          broken.push(`${file}: ${target} (no such file)`);
          continue;
        }
        if (anchor && url.pathname.endsWith('.md') && !anchors(readFileSync(url, 'utf8')).has(anchor))
          broken.push(`${file}: ${target} (no such heading)`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('keep the README short: what it is, install, the first server, watching, Deno, Bun, the map', () => {
    const readme = readMarkdown('README.md');
    assert.ok(readme.split('\n').length <= 300, `README.md has ${readme.split('\n').length} lines`);
    // Every page of docs/ and bench/; a folder of pages through its README.
    const pages = markdownFiles().filter((file) =>
      /^(docs\/[^/]+\.md|docs\/[^/]+\/README\.md|bench\/README\.md)$/.test(file),
    );
    for (const page of pages) assert.ok(readme.includes(`](${page})`), `README.md does not link ${page}`);
  });
});
