/**
 * The dashboard as a new user meets it, in headless Chromium (Debian's, through playwright-core)
 * against the demo on Node behind AUTH_TOKEN:
 * - on a 390 px phone every task's id, progress, status and message is on screen whole: no cell
 *   overflows (`scrollWidth` within `clientWidth`), nothing reaches past the viewport, and the
 *   page does not scroll sideways; at 1280 px the same holds for the id;
 * - the agent's header progress follows the task's row;
 * - the agents' connection counts change in the same frame as the counter card;
 * - without the token a browser gets a page that says how to pass it, an API client the 401
 *   JSON; `/dashboard/` redirects to `/dashboard` (through the dashboard mounted there).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Hono } from 'hono';
import type { Browser, Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { dashboard, tokenRequired } from '../dashboard/index.ts';
import { createAgentHub } from '../plugin/index.ts';
import { CHROMIUM_PATH, launchChromium } from '../scripts/chromium.ts';
import { node, request, type ServerHandle, startServer, validateHttpBody } from './helpers/server.ts';

const TOKEN = 'phone-secret';
const LONG_ID = 'summarize-quarterly-report-2026-q3-europe';

/** How one element is laid out. */
interface Box {
  text: string;
  left: number;
  right: number;
  width: number;
  height: number;
  scrollWidth: number;
  clientWidth: number;
}

/** The columns of a task's row, in order. */
const COLUMNS = ['task_id', 'progress', 'status', 'message', 'outcome'] as const;

/** The boxes of the cells of task `taskId` of agent `agentId`, by column. */
const cells = (page: Page, agentId: string, taskId: string): Promise<Partial<Record<(typeof COLUMNS)[number], Box>>> =>
  page.locator(`[data-agent="${agentId}"] [data-task="${taskId}"]`).evaluate(
    (row, columns) =>
      Object.fromEntries(
        [...row.querySelectorAll<HTMLElement>(':scope > td')].map((cell, index) => {
          const rect = cell.getBoundingClientRect();
          return [
            columns[index],
            {
              text: cell.textContent ?? '',
              left: rect.left,
              right: rect.right,
              width: rect.width,
              height: rect.height,
              scrollWidth: cell.scrollWidth,
              clientWidth: cell.clientWidth,
            },
          ];
        }),
      ),
    COLUMNS,
  );

/** Asserts the cell shows all of `text` inside a viewport `width` wide. */
function assertWhole(box: Box | undefined, text: string, width: number, what: string): void {
  assert.ok(box, `${what}: no cell`);
  assert.equal(box.text, text, `${what}: text`);
  assert.ok(box.width > 0 && box.height > 0, `${what}: visible`);
  assert.ok(box.scrollWidth <= box.clientWidth, `${what}: overflows (${box.scrollWidth} > ${box.clientWidth})`);
  assert.ok(box.left >= 0 && box.right <= width, `${what}: ${box.left}..${box.right} outside 0..${width}`);
}

const until = async (what: string, check: () => Promise<boolean>, timeout = 15_000) => {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

describe('the dashboard for a new user', {
  concurrency: false,
  timeout: 180_000,
  skip: !existsSync(CHROMIUM_PATH) && `no ${CHROMIUM_PATH}`,
}, () => {
  let browser: Browser;
  let server: ServerHandle;
  before(async () => {
    browser = await launchChromium();
    server = await startServer(node, { AUTH_TOKEN: TOKEN });
  });
  after(async () => {
    await browser?.close();
    if (server) assert.equal(await server.stop(), 0, server.output());
  });

  const publish = async (agent: string, body: unknown) => {
    const res = await request(`${server.http}/agents/${agent}/updates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 202, res.text);
  };

  /** A page of `width` px on the dashboard, watching `agents`, failing on any page error. */
  const open = async (width: number, agents: string) => {
    const page = await browser.newPage({ viewport: { width, height: 844 } });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(error.message));
    const response = await page.goto(`${server.http}/?token=${TOKEN}&agents=${agents}&stats=300&refresh=60000`);
    assert.equal(response?.status(), 200);
    return { page, problems };
  };

  it('at 390 px: id, progress, status and message whole, and no sideways scroll', async () => {
    await publish('phone-a', [
      {
        type: 'task_update',
        task_id: LONG_ID,
        status: 'running',
        progress: 64,
        message: 'reading section 3 of 5: revenue by region and by quarter',
      },
      {
        type: 'task_update',
        task_id: 'outline',
        status: 'completed',
        progress: 100,
        message: 'outline ready',
        result: { sections: 5, sources: ['annual-report-2026.pdf', 'press-release-2026-11.html'] },
      },
    ]);
    for (const width of [390, 1280]) {
      const { page, problems } = await open(width, 'phone-a');
      try {
        await page.locator(`[data-agent="phone-a"] [data-task="outline"] [data-field="result"]`).waitFor();
        const long = await cells(page, 'phone-a', LONG_ID);
        assertWhole(long.task_id, LONG_ID, width, `${width} px: task id`);
        if (width < 600) {
          assertWhole(long.status, 'running', width, `${width} px: status`);
          assertWhole(long.progress, '64%', width, `${width} px: progress`);
          assertWhole(long.message, 'reading section 3 of 5: revenue by region and by quarter', width, 'message');
          const outline = await cells(page, 'phone-a', 'outline');
          const result = JSON.stringify({
            sections: 5,
            sources: ['annual-report-2026.pdf', 'press-release-2026-11.html'],
          });
          assertWhole(outline.outcome, result, width, `${width} px: result`);
          const bar = await page
            .locator(`[data-agent="phone-a"] [data-task="${LONG_ID}"] progress`)
            .evaluate((node) => node.getBoundingClientRect().width);
          assert.ok(bar >= 200, `the bar is ${bar} px wide`);
          // The id and the status share a line; the bar has one of its own below them.
          assert.ok(long.status!.right > long.task_id!.right, 'status right of the id');
          assert.ok(long.progress!.width > long.task_id!.width, 'the bar spans the row');
        }
        const page_ = await page.evaluate(() => ({
          scroll: document.documentElement.scrollWidth,
          client: document.documentElement.clientWidth,
        }));
        assert.ok(page_.scroll <= page_.client, `${width} px: the page scrolls sideways (${page_.scroll})`);
        assert.deepEqual(problems, []);
      } finally {
        await page.close();
      }
    }
  });

  it("keeps the header's progress in step with the task's row", async () => {
    await publish('phone-b', {
      type: 'status_update',
      status: 'running',
      execution_status: { state: 'executing', task_id: 'task-17', progress: 0, message: 'started' },
    });
    const { page, problems } = await open(390, 'phone-b');
    try {
      const detail = page.locator('[data-agent="phone-b"] [data-field="detail"]');
      await until('the header', async () => (await detail.textContent()) === 'executing · task-17 · 0% · started');
      for (const progress of [23, 59]) {
        await publish('phone-b', { type: 'task_update', task_id: 'task-17', status: 'running', progress });
        const bar = page.locator('[data-agent="phone-b"] [data-task="task-17"] progress');
        await until(`row ${progress}`, async () => (await bar.getAttribute('aria-valuenow')) === String(progress));
        assert.equal(await detail.textContent(), `executing · task-17 · ${progress}% · started`);
      }
      // A status naming another task takes over the header.
      await publish('phone-b', {
        type: 'status_update',
        status: 'running',
        execution_status: { state: 'executing', task_id: 'task-18', progress: 5 },
      });
      await until('task-18', async () => (await detail.textContent()) === 'executing · task-18 · 5%');
      await publish('phone-b', { type: 'task_update', task_id: 'task-17', status: 'completed', progress: 100 });
      await page.locator('[data-agent="phone-b"] [data-task="task-17"][data-status="completed"]').waitFor();
      assert.equal(await detail.textContent(), 'executing · task-18 · 5%', 'another task leaves the header alone');
      // A page opened now draws the header from the snapshot, in step with the newer row.
      await publish('phone-b', { type: 'task_update', task_id: 'task-18', status: 'running', progress: 71 });
      const late = await open(390, 'phone-b');
      try {
        const lateDetail = late.page.locator('[data-agent="phone-b"] [data-field="detail"]');
        await until('snapshot header', async () => (await lateDetail.textContent()) === 'executing · task-18 · 71%');
      } finally {
        await late.page.close();
      }
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });

  it('changes the agents’ connection counts in the same frame as the counter card', async () => {
    await publish('phone-a', { type: 'status_update', status: 'idle' });
    await publish('phone-c', { type: 'status_update', status: 'idle' });
    const { page, problems } = await open(390, 'phone-c');
    const extra: WebSocket[] = [];
    try {
      const read = () =>
        page.evaluate(() => {
          const card = Number(document.querySelector('[data-counter="connections"]')?.textContent);
          const agents = [...document.querySelectorAll('[data-field="connections"]')].map((node) =>
            Number(node.textContent),
          );
          const own = Number(document.querySelector('[data-agent="phone-c"] [data-field="connections"]')?.textContent);
          return {
            card,
            own,
            sum: agents.reduce((a, b) => a + b, 0),
            known: agents.every(Number.isFinite),
            views: agents.length,
          };
        });
      // Settled: one connection per agent shown, this page's (the earlier pages' are gone).
      await until('counts shown', async () => {
        const now = await read();
        return now.known && now.own === 1 && now.card === now.views && now.sum === now.views;
      });
      const base = (await read()).card;
      for (let n = 1; n <= 2; n++) {
        const socket = new WebSocket(`${server.ws}/agents/phone-c/ws?token=${TOKEN}`);
        extra.push(socket);
        await new Promise((resolve, reject) => {
          socket.once('open', resolve);
          socket.once('error', reject);
        });
        // Sampled as fast as the page answers: the card never shows a count the agents do not.
        await until(`card ${base + n}`, async () => {
          const now = await read();
          assert.equal(now.sum, now.card, `agents ${now.sum}, card ${now.card}`);
          return now.card === base + n;
        });
        assert.equal((await read()).own, 1 + n);
      }
      // One connection moves from phone-c to phone-a: the total stays, the agents' counts follow.
      const countOf = (agent: string) =>
        page.locator(`[data-agent="${agent}"] [data-field="connections"]`).textContent();
      assert.equal(await countOf('phone-a'), '1');
      const moved = new WebSocket(`${server.ws}/agents/phone-a/ws?token=${TOKEN}`);
      extra.push(moved);
      extra.shift()?.terminate();
      await until('phone-a 2, phone-c 2', async () => {
        const now = await read();
        assert.equal(now.sum, now.card, `agents ${now.sum}, card ${now.card}`);
        return (await countOf('phone-a')) === '2' && now.own === 2;
      });
      assert.equal((await read()).card, base + 2);
      assert.deepEqual(problems, []);
    } finally {
      for (const socket of extra) socket.terminate();
      await page.close();
    }
  });

  it('without the token: a browser gets a page saying how to pass it, an API client the 401 JSON', async () => {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      const response = await page.goto(`${server.http}/`);
      assert.equal(response?.status(), 401);
      assert.match(response?.headers()['content-type'] ?? '', /^text\/html/);
      const text = (await page.locator('body').textContent()) ?? '';
      assert.match(text, /This dashboard needs a token/);
      assert.match(text, /\/\?token=<your token>/);
      const wrong = await page.goto(`${server.http}/?token=nope`);
      assert.equal(wrong?.status(), 401);
      assert.match((await page.locator('body').textContent()) ?? '', /The token in the address was refused/);
    } finally {
      await page.close();
    }
    const api = await request(`${server.http}/`);
    assert.equal(api.status, 401);
    assert.equal(api.headers['x-agent-ws-error'], 'unauthorized');
    assert.equal(api.headers['www-authenticate'], 'Bearer');
    assert.equal((JSON.parse(api.text) as { error: string }).error, 'unauthorized');
    validateHttpBody('HttpError', JSON.parse(api.text));
    const stats = await request(`${server.http}/agents/ws/stats`, { headers: { accept: 'text/html' } });
    assert.equal(stats.status, 401, "the hub's routes stay JSON");
    assert.equal((JSON.parse(stats.text) as { error: string }).error, 'unauthorized');
  });
});

describe('the dashboard mounted at /dashboard', () => {
  it('redirects /dashboard/ to /dashboard with the query, through the guard on /dashboard', async () => {
    const hub = createAgentHub({ logger: false, heartbeatInterval: 0 });
    const app = new Hono();
    let guarded = 0;
    app.use('/dashboard', async (c, next) => {
      guarded++;
      return c.req.query('token') === 't' ? next() : tokenRequired(c);
    });
    app.route('/dashboard', dashboard(hub));
    app.get('/dashboard/other', (c) => c.text('other'));
    const slash = await app.request('/dashboard/?token=t&agents=a');
    assert.equal(slash.status, 308);
    assert.equal(slash.headers.get('location'), '/dashboard?token=t&agents=a');
    assert.equal(guarded, 0, 'the redirect holds nothing the guard protects');
    assert.equal((await app.request('/dashboard?token=t')).status, 200);
    assert.equal((await app.request('/dashboard')).status, 401);
    assert.equal(guarded, 2);
    assert.equal(await (await app.request('/dashboard/other')).text(), 'other', 'other routes under it are untouched');
    assert.equal((await app.request('/dashboard/x')).status, 404);

    const root = new Hono();
    root.route('/', dashboard(hub));
    assert.equal((await root.request('/')).status, 200);
    await hub.close();
  });
});
