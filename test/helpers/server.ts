/**
 * Starts the demo server as a child process on a random port, the way users start it.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import type { AgentsPage, HubStats } from '../../plugin/index.ts';
import { DEMO_ARGS, runtimeBinary, runtimeEnv } from '../../scripts/runtimes.ts';
import { spawnReady } from '../../scripts/spawn.ts';
import { loadContract } from '../../spec/contract.ts';

/** Project root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A way to run the demo server. */
export interface Runtime {
  /** Shown in test names. */
  name: string;
  /** The command and its arguments. */
  command: () => [string, string[]];
  /** Extra environment (caches kept inside the project). */
  env?: Record<string, string>;
  /** Working directory; the project root unless given. */
  cwd?: string;
  /** Run once before each start, e.g. to install what the command needs. */
  prepare?: () => void;
}

/** Node through tsx, as `npm start` runs it. */
export const node: Runtime = {
  name: 'node',
  command: () => [process.execPath, ['--import', 'tsx', 'examples/demo/node.ts']],
};

/**
 * Deno, as `npm run start:deno` runs it: the real binary spawned directly (no wrapper), so
 * `stop()`'s SIGTERM reaches the runtime; caches inside the project.
 */
export const deno: Runtime = {
  name: 'deno',
  command: () => [runtimeBinary('deno'), DEMO_ARGS.deno],
  env: runtimeEnv(),
};

/** Bun, as `npm run start:bun` runs it; see `deno`. */
export const bun: Runtime = {
  name: 'bun',
  command: () => [runtimeBinary('bun'), DEMO_ARGS.bun],
  env: runtimeEnv(),
};

/**
 * The demo as a Worker on workerd, as `npm run start:workers` runs it. The stats are read from
 * the directory the agents' objects report to: `REPORT_INTERVAL_MS=0` has every object report
 * each change before it answers, so the suites read figures as current as on the other runtimes
 * (the default, 10 s, is how stale a deployment's are).
 */
export const workers: Runtime = {
  name: 'workers',
  command: () => [process.execPath, ['--import', 'tsx', 'scripts/start-workers.ts']],
  env: { REPORT_INTERVAL_MS: '0' },
};

/** A running server. */
export interface ServerHandle {
  readonly port: number;
  /** `http://127.0.0.1:PORT` */
  readonly http: string;
  /** `ws://127.0.0.1:PORT` */
  readonly ws: string;
  readonly process: ChildProcess;
  /** Everything the process printed. */
  output(): string;
  /** SIGTERM (SIGKILL after 10 s); resolves with the exit code (`null` when a signal ended it). */
  stop(): Promise<number | null>;
}

/**
 * Starts the demo server with `env` (DEMO_AGENTS=0, LOG=off and PORT=0 unless given).
 */
export async function startServer(runtime: Runtime, env: Record<string, string> = {}): Promise<ServerHandle> {
  runtime.prepare?.();
  const [command, args] = runtime.command();
  const server = await spawnReady({
    name: `${runtime.name} server`,
    command,
    args,
    cwd: runtime.cwd ?? ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DEMO_AGENTS: '0', LOG: 'off', ...runtime.env, ...env },
    ready: /listening on http:\/\/127\.0\.0\.1:(\d+)/,
    streams: ['stdout'],
    timeoutMs: 30_000,
    graceMs: 10_000,
  });
  const port = Number(server.match[1]);
  return {
    port,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    process: server.child,
    output: server.output,
    stop: server.stop,
  };
}

/** Ms `request()` waits for a whole answer before it gives up (and rejects). */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * One HTTP request on a fresh connection (no pooling: a 413 makes the server drop the socket,
 * which a pooled client would otherwise reuse). Always settles: it resolves with the answer, or
 * with as much of it as arrived when the server cut the connection after its status line (a
 * refusal while the body was still being written), and rejects when no answer came at all (the
 * error says so, with the URL), or none within `timeout` ms.
 */
export function request(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; timeout?: number } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  const method = options.method ?? 'GET';
  const timeout = options.timeout ?? REQUEST_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    let answered: http.IncomingMessage | undefined;
    let text = '';
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (answered) resolve({ status: answered.statusCode ?? 0, headers: answered.headers, text });
      else reject(error ?? new Error(`${method} ${url}: the connection closed without an answer`));
      req.destroy();
    };
    const req = http.request(url, { method, headers: options.headers, agent: false }, (res) => {
      answered = res;
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
      });
      res.on('end', () => settle());
      // Cut mid-answer: what arrived is the answer.
      res.on('close', () => settle());
      res.on('error', () => settle());
    });
    const timer = setTimeout(
      () => settle(new Error(`${method} ${url}: no whole answer within ${timeout} ms`)),
      timeout,
    );
    req.on('error', (error: NodeJS.ErrnoException) => {
      // The server may answer (413) and close before the whole body is written: the answer, if
      // it arrived, still settles the request through the response's events; without one, this
      // is the failure.
      if (answered === undefined) settle(new Error(`${method} ${url}: ${error.code ?? error.message}, no answer`));
    });
    req.on('close', () => {
      if (answered === undefined) settle();
    });
    req.end(options.body);
  });
}

/** The HTTP routes' schemas, read from the committed openapi.yaml (not from the valibot code). */
const httpContract = loadContract(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8'));

/** Throws when an HTTP response body breaks openapi.yaml; returns it. */
export function validateHttpBody(schema: string, body: unknown): unknown {
  const problems = httpContract.checkSchema(schema, body);
  if (problems.length > 0)
    throw new Error(`${schema} body breaks openapi.yaml:\n  ${problems.join('\n  ')}\n${JSON.stringify(body)}`);
  return body;
}

/** POSTs updates to the ingest route. */
export async function ingest(
  server: ServerHandle,
  agentId: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const response = await request(`${server.http}/agents/${agentId}/updates`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const answer = JSON.parse(response.text) as Record<string, unknown>;
  validateHttpBody(response.status === 202 ? 'IngestAccepted' : 'HttpError', answer);
  return { status: response.status, body: answer };
}

/** Reads the stats. */
export function stats(server: ServerHandle): Promise<HubStats> {
  return statsWith(server, {});
}

/** Reads the stats, sending `headers` (credentials). */
export async function statsWith(server: ServerHandle, headers: Record<string, string>): Promise<HubStats> {
  const response = await request(`${server.http}/agents/ws/stats`, { headers });
  if (response.status !== 200) throw new Error(`stats answered ${response.status}`);
  return validateHttpBody('HubStats', JSON.parse(response.text)) as HubStats;
}

/** Reads a page of `GET /agents/ws/agents` (`query` with its `?`), held to openapi.yaml. */
export async function agents(server: ServerHandle, query = ''): Promise<AgentsPage> {
  const response = await request(`${server.http}/agents/ws/agents${query}`);
  if (response.status !== 200) throw new Error(`agents answered ${response.status}: ${response.text}`);
  return validateHttpBody('AgentsPage', JSON.parse(response.text)) as AgentsPage;
}

/** Reads `GET /agents/ws/metrics`: its content type and text. */
export async function metrics(server: ServerHandle): Promise<{ contentType: string | undefined; text: string }> {
  const response = await request(`${server.http}/agents/ws/metrics`);
  if (response.status !== 200) throw new Error(`metrics answered ${response.status}`);
  return { contentType: response.headers['content-type'], text: response.text };
}

/** A task update body for the ingest route. */
export const task = (n: number, extra: Record<string, unknown> = {}) => ({
  type: 'task_update',
  task_id: `task-${n}`,
  status: 'running',
  progress: n % 101,
  ...extra,
});

/**
 * `waitFor` under its old name, for test files written before `test/helpers/wait.ts`; new code
 * imports `waitFor` from there.
 */
export { waitFor as eventually } from './wait.ts';
