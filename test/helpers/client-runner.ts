/**
 * Runs the client as a program, on Node (with `ws`: Node 20 has no global WebSocket), Deno or
 * Bun (their global WebSocket): `connectAgent(url, options)` from the JSON argument, every
 * event printed as one JSON line. The process must then exit by itself once the client is
 * closed (by `__close__`, `closeOn`, or a fatal refusal): nothing may be left running.
 *
 * Extra option for the tests: `origin` (Node only: `ws` sends this `Origin` header).
 */
import { type ConnectOptions, connectAgent, type WebSocketConstructor } from '../../client/index.ts';
import { harness } from './client-harness.ts';

const g = globalThis as any;
const [url, options] = JSON.parse(g.Deno?.args?.[0] ?? g.process.argv[2]) as [
  string,
  ConnectOptions & { origin?: string; closeOn?: string },
];
let WS: WebSocketConstructor | undefined = g.WebSocket;
if (!WS) {
  const { default: NodeWS } = await import('ws');
  const origin = options.origin;
  WS = origin
    ? (class extends NodeWS {
        constructor(address: string, protocols?: string | string[]) {
          super(address, protocols, { origin });
        }
      } as unknown as WebSocketConstructor)
    : (NodeWS as unknown as WebSocketConstructor);
}
harness(connectAgent, url, { ...options, WebSocket: WS }, (record) => console.log(JSON.stringify(record)));
