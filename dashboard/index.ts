/**
 * `hono-agent-ws/dashboard`: a live page of every agent, its tasks and the hub's counters, as a
 * Hono app to mount where the app chooses, behind the app's own middleware like any route:
 *
 * ```ts
 * import { dashboard } from 'hono-agent-ws/dashboard';
 * app.use('/dashboard', requireAdmin);
 * app.route('/dashboard', dashboard(hub, { base: '/agents' }));
 * ```
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
import { Hono } from 'hono';
import type { AgentHub } from '../plugin/index.ts';
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
  /** How often the page asks the listing for new agents, ms. Default 5000. */
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
article.agent h2 { margin: 0; font-size: 1rem; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
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
th, td { padding: 0.3rem 0.5rem 0.3rem 0; border-top: 1px solid var(--line); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
th:nth-child(1) { width: 14%; } th:nth-child(2) { width: 26%; } th:nth-child(3) { width: 12%; } th:nth-child(4) { width: 22%; }
td:first-child { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
progress { width: calc(100% - 3.5rem); height: 0.7rem; vertical-align: middle; accent-color: var(--run); }
tr[data-status="completed"] progress { accent-color: var(--ok); }
tr[data-status="failed"] progress { accent-color: var(--bad); }
.pct { display: inline-block; width: 3rem; text-align: right; font-variant-numeric: tabular-nums; color: var(--muted); }
.result { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem; }
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
 * The dashboard as a Hono app serving one page at its root: mount it with
 * `app.route(path, dashboard(hub, options))`, after the app's middleware for that path.
 */
export function dashboard(hub: AgentHub, options: DashboardOptions = {}): Hono {
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
    const stats = await Promise.resolve(hub.stats()).catch(() => null);
    c.header('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    c.header('Cache-Control', 'no-store');
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'no-referrer');
    return c.html(page(title, { ...settings, agents: [...given], stats }));
  });
  return app;
}
