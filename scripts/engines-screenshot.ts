/**
 * `npm run example:engines:screenshot`: starts the engines example (`npm run example:engines`,
 * examples/engines/langgraph.ts), opens its dashboard in headless Debian chromium (no browser
 * download) while a LangGraph run is half done, and saves docs/engines/langgraph-dashboard.png
 * for docs/engines/langgraph.md. Not part of `npm test`: CI machines may have no chromium.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CHROMIUM_PATH, launchChromium } from './chromium.ts';
import { ROOT } from './runtimes.ts';
import { spawnReady } from './spawn.ts';

if (!existsSync(CHROMIUM_PATH)) {
  console.error(`no chromium at ${CHROMIUM_PATH}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  process.exit(1);
}

const target = join(ROOT, 'docs', 'engines', 'langgraph-dashboard.png');
const example = await spawnReady({
  name: 'engines example',
  command: process.execPath,
  args: ['--import', 'tsx', 'examples/engines/langgraph.ts'],
  cwd: ROOT,
  env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG: 'off', RUN_EVERY_MS: '1500' },
  ready: /listening on (http:\/\/127\.0\.0\.1:\d+)/,
  streams: ['stdout'],
  timeoutMs: 30_000,
  graceMs: 5_000,
});
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${example.match[1]}/`);
  // The second run halfway through its `read` node: the first run's tasks are done.
  await page.getByText('read https://example.org/coral-reefs/2').first().waitFor({ timeout: 40_000 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: target });
  if (errors.length > 0) throw new Error(`the dashboard threw:\n${errors.join('\n')}`);
  console.log(`${target} written`);
} finally {
  await browser.close();
  await example.stop();
}
