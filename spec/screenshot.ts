/**
 * `npm run docs:screenshot`: opens docs/index.html in headless Debian chromium (no browser
 * download; `apt-get install chromium`) and saves docs/screenshot.png for the README. Not part
 * of `npm test`: CI machines may have no chromium.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM_PATH, launchChromium } from '../scripts/chromium.ts';
import { DOCS_PAGE, writeDocs } from './docs.ts';

if (!existsSync(CHROMIUM_PATH)) {
  console.error(`no chromium at ${CHROMIUM_PATH}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  process.exit(1);
}

writeDocs();
const target = fileURLToPath(new URL('screenshot.png', DOCS_PAGE));
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  // The page must work offline: any request leaving it is a bug, so fail on it.
  const external: string[] = [];
  page.on('request', (request) => {
    if (!/^(file|data|blob|about):/.test(request.url())) external.push(request.url());
  });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(pathToFileURL(fileURLToPath(DOCS_PAGE)).href);
  // The component parses the spec in the browser; the messages are in the DOM once it has rendered.
  await page.getByText('connection_established').first().waitFor({ state: 'attached', timeout: 20_000 });
  await page.waitForLoadState('networkidle');
  // At 1280 px the sidebar stays (docs-page.ts widens the component's layout breakpoint), and
  // the payloads open one level by themselves.
  if (!(await page.locator('.sidebar').isVisible())) throw new Error('the sidebar is hidden at 1280 px');
  // Show the first operation with its messages rather than the prose at the top.
  // The page opens the payloads once the component has settled; wait for that to be drawn.
  await page.waitForFunction(() => document.querySelectorAll('[data-docs-opened]').length > 0);
  await page.waitForTimeout(500);
  // Show a message with its payload open, under the sidebar, rather than the prose at the top.
  await page.evaluate(() => {
    const target = document.querySelectorAll('[id="message-snapshot"]');
    target[target.length - 1]?.scrollIntoView({ block: 'start' });
  });
  await page.waitForTimeout(300);
  await page.screenshot({ path: target });
  if (external.length > 0) throw new Error(`the docs page made network requests:\n${external.join('\n')}`);
  if (errors.length > 0) throw new Error(`the docs page threw:\n${errors.join('\n')}`);
  console.log(`${target} written`);
} finally {
  await browser.close();
}
