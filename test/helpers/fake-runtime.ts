/**
 * An in-process stand-in for a runtime's `upgradeWebSocket`: sockets are plain objects that
 * record what the hub sends. Uses only hono/ws and standard APIs, so it runs on every runtime.
 */
import { Hono } from 'hono';
import { type UpgradeWebSocket, WSContext, type WSEvents } from 'hono/ws';
import type { AgentHub, RoutesOptions } from '../../plugin/index.ts';
import { validateServerFrame } from './contract.ts';

/** One fake connection. */
export class FakeSocket {
  readonly sent: string[] = [];
  closed: { code?: number; reason?: string } | undefined;
  bufferedAmount = 0;
  /** Live, like the raw sockets of `ws`, Deno and Bun: 2 (CLOSING) once a close frame went either way. */
  readyState = 1;
  failSends = false;
  readonly context: WSContext;

  constructor(readonly events: WSEvents) {
    // Like Bun, the context's `raw` is the socket itself.
    this.context = new WSContext({
      raw: this,
      readyState: 1,
      send: (data) => {
        if (this.failSends) throw new Error('socket is gone');
        this.sent.push(String(data));
      },
      close: (code, reason) => {
        this.closed = { code, reason };
        this.readyState = 2;
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

  /** The peer sent a close frame but the runtime has not reported the close yet. */
  peerClosing(): void {
    this.readyState = 2;
  }

  /** The peer closed (code 1006 = vanished). */
  peerClosed(code = 1000): void {
    this.readyState = 3;
    this.events.onClose?.(Object.assign(new Event('close'), { code, reason: '' }) as CloseEvent, this.context);
  }
}

/** A Hono app with the hub mounted on a fake runtime, and the sockets it opened. */
export function fakeRuntime(hub: AgentHub, routesOptions?: RoutesOptions) {
  const sockets: FakeSocket[] = [];
  // Which request opened which socket, so concurrent connects each get their own.
  const opened = new Map<string, FakeSocket>();
  let requests = 0;
  const upgradeWebSocket = ((createEvents: (c: any) => WSEvents | Promise<WSEvents>) => async (c: any) => {
    const socket = new FakeSocket(await createEvents(c));
    sockets.push(socket);
    opened.set(c.req.header('x-fake-request'), socket);
    socket.events.onOpen?.(new Event('open'), socket.context);
    return new Response(null, { status: 200 });
  }) as unknown as UpgradeWebSocket;
  const app = new Hono().route('/agents', hub.routes(upgradeWebSocket, routesOptions));
  /** Opens a connection for `agentId`; returns its socket (or the HTTP response when refused). */
  const connect = async (agentId: string, headers: Record<string, string> = {}, query = '') => {
    const id = String(++requests);
    const response = await app.request(`/agents/${agentId}/ws${query}`, {
      headers: { upgrade: 'websocket', 'x-fake-request': id, ...headers },
    });
    const socket = opened.get(id);
    opened.delete(id);
    return socket ?? response;
  };
  return { app, sockets, connect };
}

/**
 * A stand-in for a runtime's native pub/sub (Bun's topics): `publish` from a socket reaches every
 * other subscriber, as Bun's `ServerWebSocket#publish` does; `calls` counts native publishes.
 */
export function fakeTopics() {
  const subscribers = new Map<string, Set<FakeSocket>>();
  const fake = { calls: 0 };
  const socketOf = (context: WSContext) => context.raw as FakeSocket;
  const topics: NonNullable<RoutesOptions['topics']> = {
    subscribe(context, topic) {
      const set = subscribers.get(topic) ?? new Set();
      set.add(socketOf(context));
      subscribers.set(topic, set);
    },
    unsubscribe(context, topic) {
      subscribers.get(topic)?.delete(socketOf(context));
    },
    publish(via, topic, frame) {
      fake.calls++;
      for (const socket of subscribers.get(topic) ?? []) socket.sent.push(String(frame));
      void via;
    },
  };
  return Object.assign(fake, { topics });
}
