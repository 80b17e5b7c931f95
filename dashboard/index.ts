/**
 * `hono-agent-ws/dashboard`: a live page of every agent, its tasks and the hub's counters, as a
 * Hono app to mount where the app chooses, behind the app's own middleware like any route:
 *
 * ```ts
 * import { dashboard, tokenRequired } from 'hono-agent-ws/dashboard';
 * const hub = createAgentHub({ authorize: (agentId, c) => isAdmin(c) });
 * app.use('/dashboard', async (c, next) => (isAdmin(c) ? next() : tokenRequired(c)));
 * app.route('/dashboard', dashboard(hub, { base: '/agents' }));
 * app.route('/agents', hub.routes(node));
 * ```
 *
 * What a guard on the dashboard's path protects: the page only, which holds the hub's counters
 * at the time it was served and the `agents` option. Everything the page shows after that comes
 * from the hub's own routes, `<base>/<id>/ws`, `GET <base>/ws/agents` and `GET <base>/ws/stats`,
 * which middleware on the dashboard's path does not cover: the hub's `authorize` option guards
 * them (it runs for every route the hub mounts). Guard both, with the same check. `/dashboard/`
 * (trailing slash) redirects to `/dashboard`, so a guard on `/dashboard` is never bypassed.
 *
 * One HTML page with inline CSS and an inline script: the client (`hono-agent-ws/client`) and
 * the page's code, bundled ahead of time into `generated-page.ts`. Nothing is built when the app
 * runs and nothing is fetched from elsewhere, so it serves the same on Node, Deno and Bun. The
 * page watches each agent on `<base>/<id>/ws`, finds agents through `GET <base>/ws/agents` (or,
 * where the hub serves no listing, the `agents` option, `?agents=a,b` and a form), and polls
 * `GET <base>/ws/stats`. `?token=` on the page's URL is passed on to both (as `?token=` on the
 * WebSocket, `Authorization: Bearer` on fetches).
 *
 * @module
 */
import { type Context, Hono } from 'hono';
import type { HubStats } from '../plugin/index.ts';
import { PAGE_SCRIPT, PAGE_SCRIPT_SHA256 } from './generated-page.ts';

/** Options of `dashboard()`. */
export interface DashboardOptions {
  /** Where the hub's routes are mounted, as an absolute path. Default `/agents`. */
  base?: string;
  /**
   * Agents to show even when the hub serves no listing (`GET <base>/ws/agents`), or a function
   * called on each page load that returns them.
   */
  agents?: readonly string[] | (() => readonly string[] | Promise<readonly string[]>);
  /** The page's title. Default `Agents`. */
  title?: string;
  /**
   * How often the page asks the listing for new agents, ms, besides at once whenever the stats
   * show the connection count moved (so each agent's count agrees with the counter card). Default 5000.
   */
  refreshInterval?: number;
  /** How often the page polls the stats, ms. Default 2000. */
  statsInterval?: number;
  /** At most this many agents are watched by one page. Default 50. */
  maxAgents?: number;
  /** Tasks kept per agent, newest first. Default 10. */
  maxTasks?: number;
}

const escapeHtml = (value: string): string =>
  value.replace(
    /[&<>"']/g,
    (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char] as string,
  );

/** JSON safe inside `<script type="application/json">`: no `<` can end the element. */
const scriptJson = (value: unknown): string =>
  JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');

/**
 * The page's policy: its one inline script by hash, inline styles, and connections to its own
 * origin only (the hub's WebSocket and HTTP routes).
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `script-src 'sha256-${PAGE_SCRIPT_SHA256}'`,
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1d2330; --muted: #667085; --line: #e3e6ea;
  --ok: #1a7f37; --run: #0969da; --bad: #cf222e; --warn: #9a6700; }
@media (prefers-color-scheme: dark) { :root { --bg: #0f1217; --card: #171b22; --fg: #e6e8eb; --muted: #8b949e;
  --line: #2a313c; --ok: #3fb950; --run: #58a6ff; --bad: #f85149; --warn: #d29922; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header.top { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.5rem 1.5rem; padding: 1rem 1.5rem;
  border-bottom: 1px solid var(--line); background: var(--card); }
header.top h1 { margin: 0; font-size: 1.25rem; }
.muted, #instance, #source, #hidden, #stats-state { color: var(--muted); font-size: 0.85rem; }
main { padding: 1rem 1.5rem 2rem; max-width: 1400px; }
.counters { display: grid; grid-template-columns: repeat(auto-fit, minmax(135px, 1fr)); gap: 0.75rem; margin: 0 0 1rem; padding: 0; }
.counters div { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.6rem 0.8rem; }
.counters dt { color: var(--muted); font-size: 0.8rem; }
.counters dd { margin: 0; font-size: 1.4rem; font-variant-numeric: tabular-nums; }
#errors { display: flex; flex-wrap: wrap; gap: 0.4rem 1rem; list-style: none; padding: 0; margin: 0 0 1rem; }
#errors li { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 0.15rem 0.5rem; }
#errors li code { color: var(--bad); }
#errors li.none { color: var(--muted); }
.bar { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1rem; margin-bottom: 0.75rem; }
form { display: flex; gap: 0.4rem; }
input, button { font: inherit; padding: 0.25rem 0.5rem; border: 1px solid var(--line); border-radius: 6px; background: var(--card); color: var(--fg); }
#agents { display: grid; gap: 1rem; }
article.agent { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 0.75rem 1rem; }
article.agent header { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1rem; }
article.agent h2 { margin: 0; font-size: 1rem; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; overflow-wrap: anywhere; }
.meta { color: var(--muted); }
.pill { margin-left: auto; border: 1px solid var(--line); border-radius: 999px; padding: 0 0.6rem; font-size: 0.8rem; color: var(--muted); }
.pill[data-state="open"] { color: var(--ok); border-color: var(--ok); }
.pill[data-state="fatal"] { color: var(--bad); border-color: var(--bad); }
.status { font-weight: 600; }
.status[data-value="running"], .status.running { color: var(--run); }
.status[data-value="idle"], .status.completed { color: var(--ok); }
.status[data-value="error"], .status.failed, .status.cancelled { color: var(--bad); }
.status.pending { color: var(--warn); }
.detail { margin: 0.25rem 0 0.5rem; color: var(--muted); min-height: 1.2em; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th { text-align: left; font-weight: 500; color: var(--muted); font-size: 0.8rem; }
th, td { padding: 0.3rem 0.5rem 0.3rem 0; border-top: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th:nth-child(1) { width: 20%; } th:nth-child(2) { width: 22%; } th:nth-child(3) { width: 12%; } th:nth-child(4) { width: 22%; }
td[data-field="task_id"] { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
td[data-field="progress"] { white-space: nowrap; }
progress { width: calc(100% - 3.5rem); height: 0.7rem; vertical-align: middle; accent-color: var(--run); }
tr[data-status="completed"] progress { accent-color: var(--ok); }
tr[data-status="failed"] progress { accent-color: var(--bad); }
.pct { display: inline-block; width: 3rem; text-align: right; font-variant-numeric: tabular-nums; color: var(--muted); }
.result { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem; }
/* A long result or error scrolls inside its cell rather than being cut or stretching the row. */
.clip { max-height: 6em; overflow: auto; }
/* A phone: each task is a small block (id and status, the bar, the message, the outcome), nothing cut. */
@media (max-width: 640px) {
  header.top, main { padding-left: 0.75rem; padding-right: 0.75rem; }
  article.agent { padding: 0.6rem 0.75rem; }
  .counters { grid-template-columns: repeat(auto-fit, minmax(105px, 1fr)); gap: 0.5rem; }
  .counters dd { font-size: 1.15rem; }
  table, tbody, td { display: block; }
  thead { display: none; }
  tr { display: grid; grid-template-columns: minmax(0, 1fr) auto; grid-template-areas: "id status" "bar bar" "message message" "outcome outcome";
    gap: 0.1rem 0.75rem; padding: 0.45rem 0; border-top: 1px solid var(--line); }
  td { padding: 0; border: 0; }
  td:empty { display: none; }
  td[data-field="task_id"] { grid-area: id; }
  td[data-field="progress"] { grid-area: bar; }
  td:nth-child(3) { grid-area: status; text-align: right; }
  td:nth-child(4) { grid-area: message; }
  td:nth-child(5) { grid-area: outcome; }
  progress { width: calc(100% - 3.5rem); }
}
.error { color: var(--bad); }
#empty { color: var(--muted); }
`;

const COUNTERS: [string, string][] = [
  ['connections', 'connections'],
  ['agents_connected', 'agents connected'],
  ['messages_per_second', 'messages / s'],
  ['updates_per_second', 'updates / s'],
  ['messages_sent', 'messages sent'],
  ['updates_published', 'updates published'],
  ['queued_messages', 'queued'],
  ['errors', 'errors'],
];

/** The page, given its settings. */
function page(title: string, config: Record<string, unknown>): string {
  const counters = COUNTERS.map(
    ([name, label]) => `<div><dt>${label}</dt><dd data-counter="${name}">—</dd></div>`,
  ).join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header class="top"><h1>${escapeHtml(title)}</h1><span id="instance"></span><span id="stats-state"></span></header>
<main>
<section aria-label="hub counters">
<dl class="counters">${counters}</dl>
<ul id="errors" aria-label="errors by kind"></ul>
</section>
<div class="bar"><span id="source"></span><span id="hidden"></span>
<form id="add"><input id="add-id" name="agent" placeholder="agent id" aria-label="agent id to watch" autocomplete="off"><button>watch</button></form></div>
<p id="empty">No agent yet.</p>
<section id="agents" aria-label="agents"></section>
</main>
<script type="application/json" id="dashboard-config">${scriptJson(config)}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}

/**
 * What the dashboard uses of a hub: its stats, shown at once in the page (which then polls the
 * hub's routes). `AgentHub` (`stats()`) and the Cloudflare hub (`stats(c)`, read from its
 * directory object through the request's env) both have it.
 */
export interface DashboardHub {
  /**
   * The hub's counters.
   *
   * @param c The request for the page.
   *
   * @returns The stats, or a promise of them.
   */
  stats(c: Context): HubStats | Promise<HubStats>;
}

/**
 * The dashboard as a Hono app serving one page at its root: mount it with
 * `app.route(path, dashboard(hub, options))`, after the app's middleware for that path. The
 * path with a trailing slash answers 308 to the path without it, query kept.
 */
export function dashboard(hub: DashboardHub, options: DashboardOptions = {}): Hono {
  const base = `/${(options.base ?? '/agents').replace(/^\/+|\/+$/g, '')}`;
  const settings = {
    base: base === '/' ? '' : base,
    refreshInterval: options.refreshInterval ?? 5000,
    statsInterval: options.statsInterval ?? 2000,
    maxAgents: options.maxAgents ?? 50,
    maxTasks: options.maxTasks ?? 10,
  };
  const title = options.title ?? 'Agents';
  const app = new Hono();
  app.get('/', async (c) => {
    const given = typeof options.agents === 'function' ? await options.agents() : (options.agents ?? []);
    // This instance's figures, so the counters show at once; the page polls the rest.
    const stats = await Promise.resolve()
      .then(() => hub.stats(c))
      .catch(() => null);
    c.header('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    c.header('Cache-Control', 'no-store');
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'no-referrer');
    return c.html(page(title, { ...settings, agents: [...given], stats }));
  });
  // `app.route('/dashboard', …)` makes `/` here `/dashboard` only, and no route of this app can
  // name `/dashboard/`: a route of path '' can, as `route()` joins it to the mount path as
  // given (`mergePath`). It redirects rather than serves, so middleware on the path without the
  // slash always runs. Mounted at `/`, it joins to `/`, where the page answers first.
  app.routes.push({
    basePath: '/',
    path: '',
    method: 'GET',
    handler: (c: Context) => {
      const url = new URL(c.req.url);
      const path = url.pathname.replace(/\/+$/, '');
      return path === '' ? c.notFound() : c.redirect(`${path}${url.search}`, 308);
    },
  });
  return app;
}

/** The words of a refusal for want of a token. */
const TOKEN_MESSAGE = 'a valid token is required: ?token= or Authorization: Bearer';

/**
 * The answer for the app's guard to return when a request for the dashboard has no valid token:
 * 401 with `WWW-Authenticate: Bearer`. A browser (`Accept: text/html`) gets a short page that
 * says how to pass the token: open the dashboard as `<path>?token=<token>`, and the page passes
 * it on to the hub's routes. Anything else gets the hub's JSON refusal,
 * `{"error":"unauthorized","message":…}` with `X-Agent-WS-Error: unauthorized`.
 */
export function tokenRequired(c: Context, options: { title?: string } = {}): Response {
  c.header('WWW-Authenticate', 'Bearer');
  c.header('Cache-Control', 'no-store');
  if (!/\btext\/html\b/.test(c.req.header('accept') ?? '')) {
    c.header('X-Agent-WS-Error', 'unauthorized');
    return c.json({ error: 'unauthorized', message: TOKEN_MESSAGE }, 401);
  }
  const given = new URL(c.req.url).searchParams.has('token');
  const title = options.title ?? 'Agents';
  const example = `${new URL(c.req.url).pathname}?token=<your token>`;
  c.header(
    'Content-Security-Policy',
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  );
  c.header('X-Content-Type-Options', 'nosniff');
  c.header('Referrer-Policy', 'no-referrer');
  return c.html(
    `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}: token required</title>
<style>
:root { color-scheme: light dark; }
body { margin: 0 auto; max-width: 36rem; padding: 2rem 1rem; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; overflow-wrap: anywhere; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p id="token-required">${given ? 'The token in the address was refused.' : 'This dashboard needs a token.'}
Open it with the token in the address:</p>
<p><code>${escapeHtml(example)}</code></p>
<p>The page passes it on to the agents' WebSockets (as <code>?token=</code>) and to the stats and listing (as <code>Authorization: Bearer</code>).</p>
</body>
</html>
`,
    401,
  );
}
