import type { UpgradeWebSocket, WSContext } from 'hono/ws';

/**
 * Runtime details an adapter passes to `hub.routes`.
 */
export interface RoutesOptions {
  /**
   * Bytes waiting in a socket's send buffer. Default: the standard `raw.bufferedAmount`
   * (Node's `ws`, Deno); Bun's adapter reads `raw.getBufferedAmount()`.
   */
  bufferedAmount?: (socket: WSContext) => number;
  /**
   * Prepares a frame once for all the sockets it goes to (Node's adapter encodes it to bytes
   * once instead of once per socket). Give `sendFrame` with it. Default: the string itself.
   */
  prepareFrame?: (frame: string) => unknown;
  /** Writes a prepared frame to one socket as a text frame. Default: `socket.send(frame)`. */
  sendFrame?: (socket: WSContext, prepared: unknown) => void;
  /**
   * Whether a socket is still open: `false` from the moment a close frame was received or sent,
   * so the hub stops counting it and sends its updates elsewhere. Default: the live
   * `raw.readyState` (Node's `ws`, Deno, Bun), else the context's `readyState`.
   */
  isOpen?: (socket: WSContext) => boolean;
  /**
   * The runtime reports a socket's close (`onClose`) as soon as a close frame is read or sent,
   * not only once TCP is gone (Bun: uWebSockets answers a close frame and reports the close in
   * the same step). Then the hub trusts the close events and does not read each socket's state
   * before each frame. Default `false` (`ws` reports the close only once TCP is gone).
   */
  closeReported?: boolean;
  /**
   * The runtime's own pub/sub (Bun's topics): the hub subscribes each socket to its agent's
   * topic and fans a frame out with one `publish` instead of one write per socket. Counters and
   * the slow-consumer check stay per socket.
   */
  topics?: TopicFanOut;
}

/**
 * Everything a runtime needs to serve the hub's routes: its `upgradeWebSocket` and the details
 * an adapter knows about its sockets. The adapters export one each (`node`, `deno`, `bun`), so
 * `hub.routes(bun)` cannot forget a detail; on another Hono runtime, pass its `upgradeWebSocket`.
 */
export interface RuntimeBinding extends RoutesOptions {
  /** The runtime's `upgradeWebSocket` helper. */
  readonly upgradeWebSocket: UpgradeWebSocket<any, any>;
}

/**
 * A runtime's native pub/sub, as the hub uses it.
 */
export interface TopicFanOut {
  /** Subscribes a socket to a topic. */
  subscribe(socket: WSContext, topic: string): void;
  /** Unsubscribes a socket (the hub gave up on it; it may still be closing). */
  unsubscribe(socket: WSContext, topic: string): void;
  /** Writes a prepared frame to every socket subscribed to `topic`; `via` is one of them. */
  publish(via: WSContext, topic: string, prepared: unknown): void;
}

/**
 * How the hub writes to and measures the sockets of one `routes()` mount.
 *
 * @internal
 */
export interface SocketBinding {
  readonly bufferedAmount: (socket: WSContext) => number;
  readonly isOpen: (socket: WSContext) => boolean;
  readonly closeReported: boolean;
  readonly prepare: (frame: string) => unknown;
  readonly send: (socket: WSContext, prepared: unknown) => void;
  readonly topics: TopicFanOut | undefined;
}

/**
 * Where a client asks to resume: the last `seq` it has, in `epoch`.
 */
export interface ResumePoint {
  readonly since: number;
  readonly epoch: string;
}

/** What `AgentIdSchema` accepts: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`. */
export const AGENT_ID: RegExp = /^[A-Za-z0-9._:-]{1,128}$/;

/** Reads the standard `bufferedAmount` of the raw socket. */
const standardBufferedAmount = (socket: WSContext): number =>
  (socket.raw as { bufferedAmount?: number } | undefined)?.bufferedAmount ?? 0;

/**
 * Reads the raw socket's live `readyState` (1 = OPEN): Bun hands a context whose own
 * `readyState` never changes, the raw sockets of `ws`, Deno and Bun all keep theirs current.
 */
const standardIsOpen = (socket: WSContext): boolean =>
  ((socket.raw as { readyState?: number } | undefined)?.readyState ?? socket.readyState) === 1;

/**
 * The binding of one `routes()` mount: the runtime's details, standard ones where it gave none.
 *
 * @param options The runtime's details.
 *
 * @returns The binding every socket of the mount shares.
 *
 * @throws {TypeError} When only one of `prepareFrame` and `sendFrame` is given.
 *
 * @internal
 */
export function createSocketBinding(options: RoutesOptions): SocketBinding {
  if ((options.prepareFrame === undefined) !== (options.sendFrame === undefined)) {
    throw new TypeError('hub.routes: give prepareFrame and sendFrame together');
  }
  return {
    bufferedAmount: options.bufferedAmount ?? standardBufferedAmount,
    isOpen: options.isOpen ?? standardIsOpen,
    closeReported: options.closeReported === true,
    prepare: options.prepareFrame ?? ((frame) => frame),
    send: options.sendFrame ?? ((socket, frame) => socket.send(frame as string)),
    topics: options.topics,
  };
}
