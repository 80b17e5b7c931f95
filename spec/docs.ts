/**
 * `npm run docs`: renders asyncapi.yaml to docs/index.html, one self-contained page that works
 * offline.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { SPEC_PATH } from './contract.ts';
import { renderDocsPage } from './docs-page.ts';

/** The generated page. */
export const DOCS_PAGE = new URL('../docs/index.html', import.meta.url);

/**
 * Writes the docs page for the committed spec.
 *
 * @param target Where to write it (default docs/index.html).
 *
 * @returns The path written.
 */
export function writeDocs(target: URL = DOCS_PAGE): string {
  const specText = readFileSync(SPEC_PATH, 'utf8');
  const { info } = parse(specText) as { info: { title: string; version: string } };
  mkdirSync(new URL('.', target), { recursive: true });
  writeFileSync(target, renderDocsPage(specText, `${info.title} ${info.version}: WebSocket API`));
  return fileURLToPath(target);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const path = writeDocs();
  console.log(`${path} written in ${Date.now() - started} ms`);
}
