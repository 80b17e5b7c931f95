/**
 * `npm run docs:screenshot`: opens docs/index.html in headless Debian chromium (no browser
 * download; `apt-get install chromium`) and saves docs/screenshot.png for the README. Not part
 * of `npm test`: CI machines may have no chromium.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { DOCS_PAGE, writeDocs } from './docs.ts';

const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  console.error(`no chromium at ${executablePath}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  process.exit(1);
}

writeDocs();
const target = fileURLToPath(new URL('screenshot.png', DOCS_PAGE));
const browser = await chromium.launch({
  executablePath,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1920, height: 1200 } });
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
  // Show the first operation with its messages rather than the prose at the top.
  await page.locator('#operations').evaluate((element) => element.scrollIntoView({ block: 'start' }));
  await page.screenshot({ path: target });
  if (external.length > 0) throw new Error(`the docs page made network requests:\n${external.join('\n')}`);
  if (errors.length > 0) throw new Error(`the docs page threw:\n${errors.join('\n')}`);
  console.log(`${target} written`);
} finally {
  await browser.close();
}
