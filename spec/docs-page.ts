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

type Node = Record<string, unknown>;

/**
 * The spec as the page shows it, fitted to how the component renders: it prints `summary` as
 * plain text (so its `code` spans showed literal backticks) and `description` as Markdown, and
 * shows a message's description again as its payload schema's. So: an operation's summary
 * becomes its description; a message's summary, the first sentence of its description, goes;
 * a payload whose schema repeats the message description is shown inline without it (the
 * Schemas section keeps it). The committed asyncapi.yaml is not changed.
 *
 * @param document asyncapi.yaml, parsed.
 * @param links Markdown links appended to the introduction (e.g. the HTTP API page).
 *
 * @returns A transformed copy.
 */
export function docsView(document: Node, links: Record<string, string> = {}): Node {
  const view = structuredClone(document) as {
    info: Node;
    operations?: Record<string, Node>;
    components?: { messages?: Record<string, Node>; schemas?: Record<string, Node> };
  };
  const linkText = Object.entries(links)
    .map(([label, href]) => `[${label}](${href})`)
    .join(' · ');
  if (linkText) view.info.description = `${String(view.info.description ?? '')}\n\nAlso: ${linkText}.`;
  for (const operation of Object.values(view.operations ?? {})) {
    if (typeof operation.summary === 'string' && operation.description === undefined) {
      operation.description = operation.summary;
      delete operation.summary;
    }
  }
  const schemas = view.components?.schemas ?? {};
  for (const message of Object.values(view.components?.messages ?? {})) {
    const description = message.description;
    if (
      typeof message.summary === 'string' &&
      typeof description === 'string' &&
      description.startsWith(message.summary)
    ) {
      delete message.summary;
    }
    const ref = (message.payload as { $ref?: unknown } | undefined)?.$ref;
    const payload = typeof ref === 'string' ? schemas[ref.replace('#/components/schemas/', '')] : undefined;
    if (payload && payload.description === description) {
      const { description: _repeated, ...rest } = payload;
      message.payload = rest;
    }
  }
  return view;
}

/**
 * The component decides between its wide layout and its narrow one (sidebar folded into a
 * floating button that covers the "Expand all" buttons) by its own width, not the window's:
 * anything up to 1536 px is narrow, with no option to change it. From 1024 px of window
 * the sidebar of the wide layout comes back. And its prose style draws a backtick before and
 * after every inline `code` element, as if the Markdown had not been rendered: a tint instead.
 */
const LAYOUT_CSS = `@media (min-width:1024px){
.aui-root .container\\:xl .burger-menu{display:none}
.aui-root .container\\:xl .sidebar{position:relative;display:block;height:auto;width:16rem;flex:none}
.aui-root .container\\:xl .sidebar--content{width:14rem}
}
.aui-root .prose code::before,.aui-root .prose code::after{content:none}
.aui-root .prose code{background:#f3f4f6;border-radius:.25rem;padding:.05rem .3rem;font-weight:500}`;

/**
 * Runs after the component has rendered: opens each message payload one level, so its fields
 * show without a click (the component has no option for it). A payload mounts closed and its
 * effects close it again after the first paint, so the click waits until the DOM has been quiet
 * for a moment. Only once per button: a payload the reader closes stays closed.
 */
const EXPAND_PAYLOADS = `(() => {
  const root = document.getElementById('asyncapi');
  const open = () => {
    for (const button of root.querySelectorAll('button')) {
      if (button.dataset.docsOpened || button.textContent.trim() !== 'Payload') continue;
      const header = button.closest('.justify-between');
      if (!header || !header.textContent.includes('Expand all')) continue;
      button.dataset.docsOpened = 'yes';
      button.click();
    }
  };
  let timer;
  new MutationObserver(() => {
    clearTimeout(timer);
    timer = setTimeout(open, 50);
  }).observe(root, { childList: true, subtree: true });
})();`;

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
<style>${inlineSafe(styles)}
${LAYOUT_CSS}</style>
</head>
<body>
<div id="asyncapi"></div>
<script>${inlineSafe(bundle)}</script>
<script>
AsyncApiStandalone.render({ schema: ${spec}, config: ${JSON.stringify(config)} }, document.getElementById('asyncapi'));
${EXPAND_PAYLOADS}
</script>
</body>
</html>
`;
}
