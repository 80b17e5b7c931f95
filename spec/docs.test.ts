/**
 * `npm run docs` produces one self-contained page that names every message. Needs no browser:
 * the screenshot script (`npm run docs:screenshot`) is the check that it also renders.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { loadContract } from './contract.ts';
import { writeDocs } from './docs.ts';

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
  });
});
