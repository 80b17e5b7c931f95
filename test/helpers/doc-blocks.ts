/**
 * The code blocks of the docs that tests run: a block right after `<!-- example: NAME -->` or
 * `<!-- install: NAME -->` in README.md or a page of docs/. Tests read them from the pages
 * themselves, so the docs and the tests cannot drift apart.
 *
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './server.ts';

/** The pages that may hold marked blocks: README.md and every Markdown page under docs/. */
export function docPages(): string[] {
  const pages = readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => join('docs', file))
    .sort();
  return ['README.md', ...pages];
}

/** One marked block: its code and the page it is on. */
export interface DocBlock {
  readonly page: string;
  readonly code: string;
}

/**
 * The blocks marked `<!-- KIND: NAME -->`, by name.
 *
 * @throws {Error} When two blocks carry the same name: a test would run only one of them.
 */
export function markedBlocks(kind: 'example' | 'install'): Map<string, DocBlock> {
  const blocks = new Map<string, DocBlock>();
  const marked = new RegExp(`<!-- ${kind}: ([\\w-]+) -->\\n\`\`\`\\w*\\n([\\s\\S]*?)\\n\`\`\``, 'g');
  for (const page of docPages()) {
    for (const [, name, code] of readFileSync(join(ROOT, page), 'utf8').matchAll(marked)) {
      const other = blocks.get(name as string);
      if (other) throw new Error(`<!-- ${kind}: ${name} --> is on both ${other.page} and ${page}`);
      blocks.set(name as string, { page, code: code as string });
    }
  }
  return blocks;
}
