/**
 * The client in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core; no
 * browser is downloaded), loading the browser bundle (client/index.ts through esbuild, as an
 * app's bundler would) from a page on the same origin as the WebSocket: the scenarios of
 * test/helpers/client-scenarios.ts, with the browser's own WebSocket. A browser never tells a
 * refused handshake's status, so here the client learns it with its fetch probe. The page
 * counts pending timers (`setTimeout` wrapped before any script runs): none may be left after
 * close(). Also checks the bundle's size: at most 5 KB gzipped without validation.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { transform } from 'esbuild';
import type { BrowserContext } from 'playwright-core';
import { CHROMIUM_PATH, launchChromiumContext } from '../scripts/chromium.ts';
import { bundleClient, type ClientBundle } from './helpers/client-bundle.ts';
import type { Report } from './helpers/client-harness.ts';
import { clientScenarios, type Driver, type Run } from './helpers/client-scenarios.ts';
import { type Front, type StaticFile, startFront } from './helpers/front.ts';
import { ROOT } from './helpers/server.ts';

const SIZE_LIMIT = 5 * 1024;

/** Runs before any page script: counts the timers set and not yet fired or cleared. */
const TIMER_SPY = `(() => {
  const pending = new Set();
  const set = window.setTimeout.bind(window);
  const clear = window.clearTimeout.bind(window);
  window.setTimeout = (callback, ms, ...args) => {
    const id = set(() => { pending.delete(id); if (typeof callback === 'function') callback(...args); }, ms);
    pending.add(id);
    return id;
  };
  window.clearTimeout = (id) => { pending.delete(id); clear(id); };
  window.pendingTimers = () => pending.size;
})();`;

const PAGE = `<!doctype html><meta charset="utf-8"><title>client</title>
<script type="module">
import { connectAgent } from '/client/index.js';
import { harness } from '/harness.js';
window.startClient = (url, options) => { harness(connectAgent, url, options, (record) => window.report(JSON.stringify(record))); };
window.ready = true;
</script>`;

describe('the client in Chromium', {
  concurrency: false,
  timeout: 180_000,
  skip: !existsSync(CHROMIUM_PATH) && `no ${CHROMIUM_PATH}`,
}, () => {
  let bundle: ClientBundle;
  let files: Record<string, StaticFile>;
  let context: BrowserContext;
  let browser: Awaited<ReturnType<typeof launchChromiumContext>> | undefined;

  before(async () => {
    bundle = await bundleClient();
    const harnessSource = readFileSync(join(ROOT, 'test/helpers/client-harness.ts'), 'utf8');
    const harness = await transform(harnessSource, { loader: 'ts', format: 'esm', target: 'es2022' });
    files = {
      '/index.html': { type: 'text/html', body: PAGE },
      '/harness.js': { type: 'text/javascript', body: harness.code },
    };
    for (const [name, text] of Object.entries(bundle.files))
      files[`/client/${name}`] = { type: 'text/javascript', body: text };
    browser = await launchChromiumContext();
    context = browser.context;
    await context.addInitScript(TIMER_SPY);
  });
  after(async () => {
    await browser?.close();
  });

  it('bundles to at most 5 KB gzipped without validation', (t) => {
    t.diagnostic(`client bundle: ${bundle.minified} B minified, ${bundle.gzipped} B gzipped (validation chunk apart)`);
    assert.ok(bundle.gzipped <= SIZE_LIMIT, `${bundle.gzipped} B gzipped`);
  });

  const driver: Driver = {
    name: 'chromium',
    probes: true,
    async start(url, options) {
      // The page and the socket on one origin, as the hub's origin check expects of a page.
      const target = new URL(url);
      const front: Front = await startFront(() => Number(target.port), files);
      const page = await context.newPage();
      const reports: Report[] = [];
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.exposeFunction('report', (json: string) => reports.push(JSON.parse(json)));
      await page.goto(`${front.http}/index.html`);
      await page.waitForFunction(() => (window as any).ready === true);
      const through = `${front.ws}${target.pathname}${target.search}`;
      await page.evaluate(([url, options]) => (window as any).startClient(url, options), [through, options] as const);
      const describeRun = () =>
        `chromium: ${reports.map((report) => JSON.stringify(report)).join('\n')}\n${errors.join('\n')}`;
      const run: Run = {
        reports,
        async waitFor(match, what, timeout = 10_000, from = 0) {
          const deadline = Date.now() + timeout;
          for (;;) {
            const found = reports.slice(from).find(match);
            if (found) return found;
            if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms\n${describeRun()}`);
            await new Promise((resolve) => setTimeout(resolve, 25));
          }
        },
        async finished(timeout = 5000) {
          await run.waitFor(
            (report) => report.event === 'state' && report.args[0] === 'closed',
            'state closed',
            timeout,
          );
          const deadline = Date.now() + 2000;
          let pending = await page.evaluate(() => (window as any).pendingTimers());
          while (pending > 0 && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 50));
            pending = await page.evaluate(() => (window as any).pendingTimers());
          }
          assert.equal(pending, 0, `timers left after close()\n${describeRun()}`);
          assert.deepEqual(errors, []);
        },
        async dispose() {
          await page.close();
          await front.close();
        },
      };
      return run;
    },
  };
  clientScenarios(driver);
});
