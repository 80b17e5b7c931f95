/**
 * Renders asyncapi.yaml as one self-contained HTML page: the spec, the stylesheet and
 * `@asyncapi/react-component`'s standalone bundle (React and the AsyncAPI parser included) all
 * inlined, so the page opens from disk with no network. The AsyncAPI generator and CLI would do
 * this server-side, but pull puppeteer and hundreds of MB from the network.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Where the standalone bundle and its stylesheet live. */
export const BUNDLE_PATH = require.resolve('@asyncapi/react-component/browser/standalone/index.js');
const STYLES_PATH = require.resolve('@asyncapi/react-component/styles/default.min.css');

/**
 * Makes code safe inside a `<script>` or `<style>` element: an early `</script>` would end it,
 * and `<!--` can switch the HTML parser into a mode where the real end tag is missed. In the
 * bundle these only occur inside string and regex literals, where `\x3C` means `<` too.
 */
function inlineSafe(text: string): string {
  return text.replace(/<(?=\/(?:script|style)|!--)/gi, '\\x3C');
}

/** Escapes text for an HTML text node or attribute. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/**
 * Builds the page.
 *
 * @param specText asyncapi.yaml as text; the component parses it in the browser.
 * @param title The page title.
 *
 * @returns The HTML.
 */
export function renderDocsPage(specText: string, title: string): string {
  const bundle = readFileSync(BUNDLE_PATH, 'utf8');
  const styles = readFileSync(STYLES_PATH, 'utf8');
  // JSON of the text, with `<` escaped, is a JS string literal that cannot close the element.
  const spec = JSON.stringify(specText).replace(/</g, '\\u003c');
  const config = { show: { sidebar: true, errors: true }, expand: { messageExamples: true } };
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="npm run docs (spec/docs.ts)">
<title>${escapeHtml(title)}</title>
<style>${inlineSafe(styles)}</style>
</head>
<body>
<div id="asyncapi"></div>
<script>${inlineSafe(bundle)}</script>
<script>
AsyncApiStandalone.render({ schema: ${spec}, config: ${JSON.stringify(config)} }, document.getElementById('asyncapi'));
</script>
</body>
</html>
`;
}
