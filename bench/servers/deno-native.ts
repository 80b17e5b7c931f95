/**
 * Bench server: bare `Deno.serve` + `Deno.upgradeWebSocket`, no Hono, no hub: Deno's floor
 * (as `bun-native.ts` is Bun's). Type-checked by `deno check`, not `tsc`.
 * Each socket joins its agent's set; a publish sends the update to every socket of the agent.
 */
import { startControl, taskUpdate } from './common.ts';

const agents = new Map<string, Set<WebSocket>>();
const server = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen: () => {} }, (req) => {
  const agent = /^\/agents\/([^/]+)\/ws/.exec(new URL(req.url).pathname)?.[1];
  if (!agent || req.headers.get('upgrade') !== 'websocket') return new Response('not found', { status: 404 });
  const { response, socket } = Deno.upgradeWebSocket(req);
  socket.onopen = () => {
    const set = agents.get(agent) ?? new Set();
    agents.set(agent, set);
    set.add(socket);
  };
  socket.onclose = () => agents.get(agent)?.delete(socket);
  return response;
});
startControl(server.addr.port, (agent, message) => {
  const set = agents.get(agent);
  if (!set) return;
  const frame = JSON.stringify(taskUpdate(agent, message));
  for (const socket of set) socket.send(frame);
});
