/**
 * `npm run example:engines`: one Hono app serves a LangGraph.js graph, the hub and its dashboard.
 * Open http://127.0.0.1:8787/ and watch `research-agent` run its graph, node by node, live: a
 * run starts every few seconds (RUN_EVERY_MS, 0 for none), and `POST /research/:topic` starts
 * one more. The graph's nodes are plain functions that take their time, so nothing needs a
 * model service.
 *
 * PORT (8787; 0 picks a free one) and HOST (127.0.0.1) as for the demo; LOG=off silences the
 * hub's log.
 *
 * @module
 */
import { dispatchCustomEvent } from '@langchain/core/callbacks/dispatch';
import type { RunnableConfig } from '@langchain/core/runnables';
import { Annotation, END, START, StateGraph } from '@langchain/langgraph';
import { Hono } from 'hono';
import { node, serveNode } from '../../adapters/node.ts';
import { langGraphCallbacks } from '../../bridges/langgraph.ts';
import { dashboard } from '../../dashboard/index.ts';
import { createAgentHub, SERVE_DEFAULTS } from '../../plugin/index.ts';

const AGENT = 'research-agent';
const TOPICS = ['tides', 'coral reefs', 'sea ice', 'kelp forests', 'ocean currents'];

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

const Research = Annotation.Root({
  topic: Annotation<string>(),
  sources: Annotation<string[]>({ reducer: (all, more) => all.concat(more), default: () => [] }),
  notes: Annotation<string[]>({ reducer: (all, more) => all.concat(more), default: () => [] }),
  summary: Annotation<string>(),
});

/** Reports `done` of `total` as the node's progress (a custom `progress` event). */
const report = (config: RunnableConfig, done: number, total: number, message: string) =>
  dispatchCustomEvent('progress', { progress: Math.round((done / total) * 100), message }, config);

/** plan → search → read → write: four nodes, each a few seconds, with progress. */
const graph = new StateGraph(Research)
  .addNode('plan', async (state, config) => {
    await report(config, 0, 1, `planning "${state.topic}"`);
    await sleep(800);
    return { notes: [`questions about ${state.topic}`] };
  })
  .addNode('search', async (state, config) => {
    const sources: string[] = [];
    for (let n = 1; n <= 4; n++) {
      await sleep(500);
      sources.push(`https://example.org/${state.topic.replaceAll(' ', '-')}/${n}`);
      await report(config, n, 4, `${n} of 4 sources`);
    }
    return { sources };
  })
  .addNode('read', async (state, config) => {
    for (const [index, source] of state.sources.entries()) {
      await sleep(700);
      await report(config, index + 1, state.sources.length, `read ${source}`);
    }
    return { notes: [`${state.sources.length} sources read`] };
  })
  .addNode('write', async (state, config) => {
    for (let n = 1; n <= 3; n++) {
      await sleep(400);
      await report(config, n, 3, `paragraph ${n} of 3`);
    }
    return { summary: `${state.topic}: ${state.notes.join('; ')}` };
  })
  .addEdge(START, 'plan')
  .addEdge('plan', 'search')
  .addEdge('search', 'read')
  .addEdge('read', 'write')
  .addEdge('write', END)
  .compile();

const hub = createAgentHub({ ...(process.env.LOG === 'off' ? { logger: false } : {}) });
const app = new Hono();
app.route('/', dashboard(hub, { base: '/agents', title: 'LangGraph research agent', agents: [AGENT] }));
app.route('/agents', hub.routes(node));

let runs = 0;
/** One run of the graph, reported to the hub by the one added line. */
const research = (topic: string) =>
  graph.invoke({ topic }, { callbacks: [langGraphCallbacks(hub, AGENT, { taskId: `run-${++runs}: ${topic}` })] });

app.post('/research/:topic', async (c) => c.json(await research(c.req.param('topic'))));

const server = await serveNode({
  fetch: app.fetch,
  hub,
  port: Number(process.env.PORT ?? SERVE_DEFAULTS.port),
  hostname: process.env.HOST || SERVE_DEFAULTS.hostname,
});
console.log(`listening on http://${process.env.HOST || SERVE_DEFAULTS.hostname}:${server.port}`);

// A run after another, so the dashboard always has one going.
const every = Number(process.env.RUN_EVERY_MS ?? 2000);
let stopping = false;
const loop = async () => {
  for (let n = 0; every > 0 && !stopping; n++) {
    await research(TOPICS[n % TOPICS.length] as string).catch((error) => console.error(error));
    await sleep(every);
  }
};
void loop();

const shutdown = async () => {
  stopping = true;
  await server.close();
  process.exit(0);
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
