/**
 * An in-process stand-in for a runtime's `upgradeWebSocket`: sockets are plain objects that
 * record what the hub sends. Uses only hono/ws and standard APIs, so it runs on every runtime.
 */
import { Hono } from 'hono';
import { type UpgradeWebSocket, WSContext, type WSEvents } from 'hono/ws';
import type { AgentHub } from '../../plugin/index.ts';
import { validateServerFrame } from './contract.ts';

/** One fake connection. */
export class FakeSocket {
  readonly sent: string[] = [];
  closed: { code?: number; reason?: string } | undefined;
  bufferedAmount = 0;
  failSends = false;
  readonly context: WSContext;

  constructor(readonly events: WSEvents) {
    this.context = new WSContext({
      raw: this,
      readyState: 1,
      send: (data) => {
        if (this.failSends) throw new Error('socket is gone');
        this.sent.push(String(data));
      },
      close: (code, reason) => {
        this.closed = { code, reason };
      },
    });
  }

  /** Parsed frames sent so far, each held to asyncapi.yaml like every frame a test sees. */
  frames(): { type: string; [field: string]: any }[] {
    return this.sent.map((frame) => validateServerFrame(JSON.parse(frame)));
  }

  receive(data: string | ArrayBuffer): void {
    this.events.onMessage?.(new MessageEvent('message', { data }), this.context);
  }

  /** The peer closed (code 1006 = vanished). */
  peerClosed(code = 1000): void {
    this.events.onClose?.(Object.assign(new Event('close'), { code, reason: '' }) as CloseEvent, this.context);
  }
}

/** A Hono app with the hub mounted on a fake runtime, and the sockets it opened. */
export function fakeRuntime(hub: AgentHub) {
  const sockets: FakeSocket[] = [];
  const upgradeWebSocket = ((createEvents: (c: any) => WSEvents | Promise<WSEvents>) => async (c: any) => {
    const socket = new FakeSocket(await createEvents(c));
    sockets.push(socket);
    socket.events.onOpen?.(new Event('open'), socket.context);
    return new Response(null, { status: 200 });
  }) as unknown as UpgradeWebSocket;
  const app = new Hono().route('/agents', hub.routes(upgradeWebSocket));
  /** Opens a connection for `agentId`; returns its socket (or the HTTP response when refused). */
  const connect = async (agentId: string, headers: Record<string, string> = {}) => {
    const count = sockets.length;
    const response = await app.request(`/agents/${agentId}/ws`, { headers: { upgrade: 'websocket', ...headers } });
    if (sockets.length === count) return response;
    return sockets[sockets.length - 1] as FakeSocket;
  };
  return { app, sockets, connect };
}
