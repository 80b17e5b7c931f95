/**
 * The dashboard (`hono-agent-ws/dashboard`) as the demo serves it at `/`, in headless Chromium
 * (Debian's /usr/bin/chromium driven by playwright-core; no browser is downloaded), on Node, Deno,
 * Bun and workerd (`npm run start:workers`): behind AUTH_TOKEN, the page opened as `/?token=`,
 * updates published through ingest move a task's <progress> to the published value and show its
 * final status and result or error, a second agent appears (from the hub's listing when it serves one, else added with the
 * page's form), and the counters and errors by kind follow the stats. No page error and no
 * Content-Security-Policy violation may occur. Also checks dashboard/generated-page.ts is what
 * `npm run dashboard` generates now. With DASHBOARD_SCREENSHOT=docs/dashboard.png the Node run
 * saves the page at 1280 px wide there.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { GENERATED, generateDashboardModule } from '../scripts/build-dashboard.ts';
import { CHROMIUM_PATH, launchChromiumContext } from '../scripts/chromium.ts';
import {
  bun,
  deno,
  node,
  ROOT,
  type Runtime,
  request,
  type ServerHandle,
  startServer,
  workers,
} from './helpers/server.ts';
import { waitFor } from './helpers/wait.ts';

const TOKEN = 'dashboard-secret';

describe('the dashboard module', () => {
  it('generated-page.ts is fresh (npm run dashboard)', async () => {
    assert.equal(readFileSync(GENERATED, 'utf8'), await generateDashboardModule(), 'run npm run dashboard');
  });
});

describe('the dashboard in Chromium', {
  concurrency: false,
  timeout: 300_000,
  skip: !existsSync(CHROMIUM_PATH) && `no ${CHROMIUM_PATH}`,
}, () => {
  let context: BrowserContext;
  let browser: Awaited<ReturnType<typeof launchChromiumContext>> | undefined;

  before(async () => {
    browser = await launchChromiumContext({ viewport: { width: 1280, height: 900 } });
    context = browser.context;
  });
  after(async () => {
    await browser?.close();
  });

  const publish = async (server: ServerHandle, agent: string, body: unknown) => {
    const res = await request(`${server.http}/agents/${agent}/updates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 202, res.text);
  };
  const counter = async (page: Page, name: string) =>
    Number(await page.locator(`[data-counter="${name}"]`).textContent());
  const until = (what: string, check: () => Promise<boolean>, timeout = 15_000) => waitFor(check, timeout, what, 100);

  for (const runtime of [node, deno, bun, workers] as Runtime[]) {
    it(`shows agents, tasks and counters live on ${runtime.name}`, async (t) => {
      const server = await startServer(runtime, { AUTH_TOKEN: TOKEN, DEMO_AGENTS: '2' });
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error' && !/Failed to load resource/.test(message.text()))
          problems.push(`console: ${message.text()}`);
      });
      try {
        // The page is behind the app's guard like the hub's routes.
        assert.equal((await request(`${server.http}/`)).status, 401);
        const response = await page.goto(`${server.http}/?token=${TOKEN}&agents=dash-a&refresh=500&stats=500`);
        assert.equal(response?.status(), 200);
        assert.match(response?.headers()['content-security-policy'] ?? '', /script-src 'sha256-/);

        const a = page.locator('[data-agent="dash-a"]');
        await a.locator('[data-field="state"][data-state="open"]').waitFor({ timeout: 15_000 });
        await page.locator('[data-agent="demo-agent-1"] [data-field="state"][data-state="open"]').waitFor();
        await until('the counters', async () => (await counter(page, 'connections')) >= 3);
        const published = await counter(page, 'updates_published');

        // A task's bar follows the published progress, then shows the final status and result.
        await publish(server, 'dash-a', { type: 'status_update', status: 'running' });
        await publish(server, 'dash-a', {
          type: 'task_update',
          task_id: 'report',
          status: 'running',
          progress: 40,
          message: 'reading sources',
        });
        const report = a.locator('[data-task="report"]');
        const bar = report.locator('progress');
        await until('progress 40', async () => (await bar.getAttribute('aria-valuenow')) === '40');
        assert.equal(await bar.evaluate((node: HTMLProgressElement) => node.value), 40);
        assert.equal(await report.locator('[data-field="message"]').textContent(), 'reading sources');
        assert.equal(await a.locator('header [data-field="status"]').textContent(), 'running');
        await publish(server, 'dash-a', [
          { type: 'task_update', task_id: 'report', status: 'running', progress: 75, message: 'writing' },
          {
            type: 'task_update',
            task_id: 'report',
            status: 'completed',
            progress: 100,
            message: 'done',
            result: { pages: 3 },
          },
          { type: 'task_update', task_id: 'fetch', status: 'failed', progress: 10, error: 'source unreachable' },
          { type: 'status_update', status: 'idle' },
        ]);
        await until('completed', async () => (await report.getAttribute('data-status')) === 'completed');
        assert.equal(await bar.evaluate((node: HTMLProgressElement) => node.value), 100);
        assert.equal(await bar.getAttribute('aria-valuenow'), '100');
        assert.equal(await report.locator('[data-field="status"]').textContent(), 'completed');
        assert.equal(await report.locator('[data-field="result"]').textContent(), '{"pages":3}');
        const failed = a.locator('[data-task="fetch"]');
        await until('failed', async () => (await failed.getAttribute('data-status')) === 'failed');
        assert.equal(await failed.locator('[data-field="error"]').textContent(), 'source unreachable');
        assert.equal(await a.locator('header [data-field="status"]').textContent(), 'idle');

        // A second agent: from the listing when the hub serves one, else through the form.
        await publish(server, 'dash-b', {
          type: 'task_update',
          task_id: 'b-1',
          status: 'running',
          progress: 55,
        });
        const listing = (await request(`${server.http}/agents/ws/agents?token=${TOKEN}`)).status === 200;
        t.diagnostic(
          listing ? 'dash-b found through GET /agents/ws/agents' : 'no listing yet: dash-b added by the form',
        );
        if (!listing) {
          await page.fill('#add-id', 'dash-b');
          await page.click('#add button');
        }
        const b = page.locator('[data-agent="dash-b"]');
        await b.waitFor({ timeout: 15_000 });
        // Its task comes with the snapshot.
        await until(
          'dash-b progress',
          async () => (await b.locator('progress').getAttribute('aria-valuenow')) === '55',
        );
        if (listing)
          await until(
            'dash-b connections',
            async () => (await b.locator('[data-field="connections"]').textContent()) === '1',
          );

        // The counters move with the stats, and errors are shown by kind.
        const bad = await request(`${server.http}/agents/dash-a/updates`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
          body: '{not json',
        });
        assert.equal(bad.status, 400);
        await until('updates published', async () => (await counter(page, 'updates_published')) >= published + 7);
        await page.locator('#errors [data-kind="ingest_rejected"]').waitFor();
        assert.ok((await counter(page, 'errors')) >= 1);
        await until('messages / s', async () => (await counter(page, 'messages_per_second')) > 0);
        assert.deepEqual(problems, []);

        const shot = process.env.DASHBOARD_SCREENSHOT;
        if (shot && runtime === node) {
          await page.waitForTimeout(1500);
          await page.screenshot({ path: join(ROOT, shot), fullPage: false });
          t.diagnostic(`screenshot: ${shot}`);
        }
      } finally {
        await page.close();
        assert.equal(await server.stop(), 0, server.output());
      }
    });
  }
});
