/**
 * Bench server: Bun's native pub/sub (`ws.subscribe` + `server.publish`), the runtime limit.
 */
import { startControl, taskUpdate } from './common.ts';

declare const Bun: any;

interface Data {
  agent: string;
}
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch(req: Request, srv: any) {
    const agent = /^\/agents\/([^/]+)\/ws/.exec(new URL(req.url).pathname)?.[1];
    if (agent && srv.upgrade(req, { data: { agent } satisfies Data })) return undefined;
    return new Response('not found', { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    idleTimeout: 0,
    sendPings: false,
    open(ws: { data: Data; subscribe(topic: string): void }) {
      ws.subscribe(ws.data.agent);
    },
    message() {},
  },
});
startControl(server.port, (agent, message) => {
  server.publish(agent, JSON.stringify(taskUpdate(agent, message)));
});
