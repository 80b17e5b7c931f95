/**
 * Bench server: the floor under the plugin's handshake. A bare Hono WebSocket route on the same
 * Node upgrade path as the plugin (`serveNode`, adapters/node-upgrade.ts, `ws`), which answers
 * each connect with one `connection_established`-shaped frame and keeps nothing: no hub, no
 * broker, no snapshot. The restart storm runs it beside the plugin and raw `ws`, so what the
 * hub itself costs per connect (plugin ÷ this) is read apart from what routing a WebSocket
 * through a Hono app costs (this ÷ raw `ws`).
 *
 * A client that asks to resume (`?since=&epoch=`) is told `recovered: true` with its own
 * position, as the plugin tells it after a restart on the same file.
 */
import { Hono } from 'hono';
import { serveNode, upgradeWebSocket } from '../../adapters/node.ts';
import { createAgentHub } from '../../plugin/index.ts';
import { startControl } from './common.ts';

let connections = 0;
const app = new Hono();
app.get(
  '/agents/:agent_id/ws',
  upgradeWebSocket((c) => {
    const agentId = c.req.param('agent_id') as string;
    const since = c.req.query('since');
    const epoch = c.req.query('epoch');
    return {
      onOpen(_event, socket) {
        // The plugin's frame, field for field, so both write the same bytes.
        socket.send(
          JSON.stringify({
            type: 'connection_established',
            agent_id: agentId,
            connection_id: `bench-${++connections}`,
            heartbeat_interval: 0,
            batch_interval: 0,
            epoch: epoch ?? 'bench-epoch',
            seq: since === undefined ? 0 : Number(since),
            recovered: since !== undefined,
            timestamp: new Date().toISOString(),
          }),
        );
      },
    };
  }),
);
// `serveNode` takes a hub to close on shutdown; this one is never mounted.
const hub = createAgentHub({ heartbeatInterval: 0, logger: false });
const server = await serveNode({ fetch: app.fetch, hub, port: 0 });
// Nothing to publish to: the storm is this server's only scenario.
startControl(server.port, () => {});
