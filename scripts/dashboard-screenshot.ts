/**
 * Saves the dashboard as the demo serves it, at desktop width (docs/dashboard.png, 1280 px) and
 * on a phone (docs/dashboard-phone.png, 390 px, twice the pixels), with headless Debian chromium (see
 * scripts/chromium.ts). The demo's simulated agents run, and one agent gets a task with a long
 * id, a failed task and a result, so the shots show what wraps. Not part of `npm test`.
 *
 * `node --import tsx scripts/dashboard-screenshot.ts [out-dir]` (default docs/).
 *
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { node, ROOT, request, startServer } from '../test/helpers/server.ts';
import { CHROMIUM_PATH, launchChromium } from './chromium.ts';

if (!existsSync(CHROMIUM_PATH)) {
  console.error(`no chromium at ${CHROMIUM_PATH}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  process.exit(1);
}

const out = process.argv[2] ?? join(ROOT, 'docs');
const server = await startServer(node, { DEMO_AGENTS: '1' });
const publish = async (agent: string, body: unknown) => {
  const res = await request(`${server.http}/agents/${agent}/updates`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 202) throw new Error(`publish: HTTP ${res.status} ${res.text}`);
};

const browser = await launchChromium();
try {
  await publish('agent-research-7', [
    {
      type: 'status_update',
      status: 'running',
      execution_status: { state: 'executing', task_id: 'summarize-quarterly-report-2026-q3', progress: 40 },
    },
    { type: 'task_update', task_id: 'fetch-sources', status: 'failed', progress: 10, error: 'source unreachable' },
    {
      type: 'task_update',
      task_id: 'outline',
      status: 'completed',
      progress: 100,
      message: 'outline ready',
      result: { sections: 5, words: 1180, sources: ['annual-report.pdf', 'press-release.html'] },
    },
    {
      type: 'task_update',
      task_id: 'summarize-quarterly-report-2026-q3',
      status: 'running',
      progress: 64,
      message: 'reading section 3 of 5: revenue by region',
    },
  ]);
  for (const [name, width, height] of [
    ['dashboard.png', 1280, 900],
    ['dashboard-phone.png', 390, 844],
  ] as const) {
    const page = await browser.newPage({ viewport: { width, height }, deviceScaleFactor: width < 600 ? 2 : 1 });
    await page.goto(`${server.http}/?agents=agent-research-7&stats=500`);
    await page.locator('[data-agent="agent-research-7"] [data-task="outline"]').waitFor({ timeout: 15_000 });
    await page.locator('[data-agent="demo-agent-1"] [data-field="state"][data-state="open"]').waitFor();
    // Let the simulated agents run a few steps and the stats poll twice.
    await page.waitForTimeout(2500);
    const path = join(out, name);
    await page.screenshot({ path });
    console.log(`${path} written`);
    await page.close();
  }
} finally {
  await browser.close();
  await server.stop();
}
