/**
 * `npm run docs`: rewrites the generated tables of the Markdown docs from the code
 * (spec/docs-tables.ts), and renders asyncapi.yaml to docs/index.html (the WebSocket API) and
 * openapi.yaml to docs/http.html (the HTTP routes), two self-contained pages that work offline
 * and link to each other.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { SPEC_PATH } from './contract.ts';
import { renderOpenApiPage } from './docs-openapi.ts';
import { docsView, renderDocsPage } from './docs-page.ts';
import { hubOptionProblems, writeTables } from './docs-tables.ts';

/** The generated page. */
export const DOCS_PAGE = new URL('../docs/index.html', import.meta.url);
/** The file name of the HTTP page, next to the WebSocket page. */
export const HTTP_PAGE_NAME = 'http.html';
const OPENAPI_PATH = new URL('../openapi.yaml', import.meta.url);

/**
 * Writes the docs pages for the committed specs: the WebSocket page at `target`, the HTTP page
 * next to it.
 *
 * @param target Where to write the WebSocket page (default docs/index.html).
 *
 * @returns The path of the WebSocket page.
 */
export function writeDocs(target: URL = DOCS_PAGE): string {
  const document = parse(readFileSync(SPEC_PATH, 'utf8')) as { info: { title: string; version: string } };
  const view = docsView(document, { 'HTTP API (openapi.yaml)': HTTP_PAGE_NAME });
  const pageName = fileURLToPath(target).split(/[\\/]/).pop() ?? 'index.html';
  mkdirSync(new URL('.', target), { recursive: true });
  writeFileSync(
    target,
    renderDocsPage(
      stringify(view, { aliasDuplicateObjects: false, lineWidth: 0 }),
      `${document.info.title} ${document.info.version}: WebSocket API`,
    ),
  );
  const openapi = parse(readFileSync(OPENAPI_PATH, 'utf8')) as Parameters<typeof renderOpenApiPage>[0];
  writeFileSync(
    new URL(HTTP_PAGE_NAME, target),
    renderOpenApiPage(openapi, { 'WebSocket API (asyncapi.yaml)': pageName }),
  );
  return fileURLToPath(target);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const problems = hubOptionProblems();
  for (const problem of problems) console.error(`docs: ${problem}`);
  const changed = writeTables();
  console.log(changed.length > 0 ? `tables rewritten in ${changed.join(', ')}` : 'every generated table is up to date');
  if (problems.length > 0) process.exitCode = 1;
  const started = Date.now();
  const path = writeDocs();
  console.log(`${path} and ${HTTP_PAGE_NAME} written in ${Date.now() - started} ms`);
}
