/**
 * A minimal WebSocket client over `node:net`, for hostile tests: it performs the HTTP upgrade
 * itself and writes any frame at all (any opcode, FIN and RSV bits, masked or not, a length
 * header that lies, invalid UTF-8), which `ws` as a client refuses to do. It also sends a close
 * frame without closing TCP (the socket is half-open-capable, so even the server's FIN does not
 * end our side), and parses what the server sends back: text and binary messages, and the close
 * frame with its code.
 *
 * Frames from the server are not validated here; tests parse text with `validateServerFrame`.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

/** WebSocket opcodes (RFC 6455 §5.2); 0x3–0x7 and 0xB–0xF are reserved. */
export const Opcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

/** One frame to write. Every field may break the protocol on purpose. */
export interface FrameSpec {
  /** 0–15. */
  opcode: number;
  /** Bytes of the payload (strings are UTF-8 encoded). Default empty. */
  payload?: Buffer | string;
  /** FIN bit. Default true. */
  fin?: boolean;
  /** RSV1..RSV3 as a 3-bit number (4 = RSV1, 2 = RSV2, 1 = RSV3). Default 0. */
  rsv?: number;
  /** Mask the payload, as clients must. Default true. */
  mask?: boolean;
  /** The masking key. Default: 4 random bytes. */
  maskKey?: Buffer;
  /**
   * The length written in the header, when it should differ from the payload's (a header that
   * announces more than is sent). Numbers over 65535 and bigints use the 64-bit form.
   */
  declaredLength?: number | bigint;
}

/**
 * Encodes one frame.
 *
 * @param spec What to write.
 *
 * @returns The frame's bytes.
 */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0));
  const length = BigInt(spec.declaredLength ?? payload.length);
  const mask = spec.mask ?? true;
  let header: Buffer;
  if (length < 126n) {
    header = Buffer.alloc(2);
    header[1] = Number(length);
  } else if (length < 65536n) {
    header = Buffer.alloc(4);
    header[1] = 126;
    header.writeUInt16BE(Number(length), 2);
  } else {
    header = Buffer.alloc(10);
    header[1] = 127;
    header.writeBigUInt64BE(length, 2);
  }
  header[0] = ((spec.fin ?? true) ? 0x80 : 0) | (((spec.rsv ?? 0) & 7) << 4) | (spec.opcode & 0x0f);
  if (!mask) return Buffer.concat([header, payload]);
  header[1] = (header[1] as number) | 0x80;
  const key = spec.maskKey ?? randomBytes(4);
  const masked = Buffer.allocUnsafe(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = (payload[i] as number) ^ (key[i & 3] as number);
  return Buffer.concat([header, key, masked]);
}

/**
 * The payload of a close frame: the code (2 bytes) and the reason. `code: undefined` gives an
 * empty payload (no status).
 */
export function closePayload(code?: number, reason: string | Buffer = ''): Buffer {
  if (code === undefined) return Buffer.alloc(0);
  const head = Buffer.alloc(2);
  head.writeUInt16BE(code, 0);
  return Buffer.concat([head, typeof reason === 'string' ? Buffer.from(reason) : reason]);
}

/** A message or control frame the server sent. Data messages are reassembled from fragments. */
export type ServerFrame =
  | { kind: 'text'; text: string }
  | { kind: 'binary'; data: Buffer }
  | { kind: 'close'; code: number | undefined; reason: string }
  | { kind: 'ping' | 'pong'; data: Buffer };

/** The server's close frame: `code` is undefined when it carried no status. */
export interface CloseFrame {
  code: number | undefined;
  reason: string;
}

/** Options of `RawSocket.connect`. */
export interface RawConnectOptions {
  /** Extra request headers (Origin, Authorization, …). */
  headers?: Record<string, string>;
  /** Handshake timeout, ms. Default 5000. */
  timeout?: number;
}

/** A refused upgrade: the HTTP status, headers (lowercase names) and body. */
export class HandshakeError extends Error {
  constructor(
    readonly status: number,
    readonly headers: Record<string, string>,
    readonly body: string,
  ) {
    super(`upgrade refused: HTTP ${status}`);
  }
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export class RawSocket {
  /** Every frame received, in order (data messages once complete). */
  readonly frames: ServerFrame[] = [];
  /** Resolves with the server's close frame (never rejects; `undefined` if TCP ended first). */
  readonly closeFrame: Promise<CloseFrame | undefined>;
  /** Resolves when the TCP connection is fully closed. */
  readonly ended: Promise<void>;
  #unread: ServerFrame[] = [];
  #wake: (() => void) | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #fragments: Buffer[] = [];
  #fragmentOpcode = 0;
  #resolveClose!: (frame: CloseFrame | undefined) => void;
  #closeSent = false;

  private constructor(readonly socket: net.Socket) {
    this.closeFrame = new Promise((resolve) => {
      this.#resolveClose = resolve;
    });
    this.ended = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('close', () => {
      this.#resolveClose(undefined);
      this.#notify();
    });
    socket.on('error', () => {});
  }

  /**
   * Opens a WebSocket to `url` (`ws://host:port/path`). Resolves once the server answered 101
   * with the right `Sec-WebSocket-Accept`; rejects with a `HandshakeError` on any other status.
   */
  static connect(url: string, options: RawConnectOptions = {}): Promise<RawSocket> {
    const target = new URL(url);
    const key = randomBytes(16).toString('base64');
    const lines = [
      `GET ${target.pathname}${target.search} HTTP/1.1`,
      `Host: ${target.host}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
      ...Object.entries(options.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
    ];
    return new Promise((resolve, reject) => {
      // allowHalfOpen: the server's FIN (after a close handshake) must not end our side.
      const socket = net.connect({ host: target.hostname, port: Number(target.port), allowHalfOpen: true });
      socket.setNoDelay(true);
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`handshake with ${url} timed out`));
      }, options.timeout ?? 5000);
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      socket.once('error', fail);
      socket.once('connect', () => socket.write(`${lines.join('\r\n')}\r\n\r\n`));
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [statusLine = '', ...headerLines] = head.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const line of headerLines) {
          const colon = line.indexOf(':');
          if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        const status = Number(statusLine.split(' ')[1]);
        const rest = head.subarray(end + 4);
        socket.off('data', onData);
        if (status !== 101) {
          // Read the body (if any) until the server closes or a short grace passes.
          let body = rest.toString('utf8');
          socket.on('data', (more: Buffer) => {
            body += more.toString('utf8');
          });
          const done = () => fail(new HandshakeError(status, headers, body));
          socket.once('end', done);
          socket.once('close', done);
          setTimeout(done, 200);
          return;
        }
        const accept = createHash('sha1')
          .update(key + GUID)
          .digest('base64');
        if (headers['sec-websocket-accept'] !== accept) return fail(new Error('bad Sec-WebSocket-Accept'));
        clearTimeout(timer);
        socket.off('error', fail);
        const raw = new RawSocket(socket);
        socket.on('data', (more: Buffer) => raw.#read(more));
        if (rest.length > 0) raw.#read(rest);
        resolve(raw);
      };
      socket.on('data', onData);
    });
  }

  /** Writes one frame (a spec, or bytes already encoded). */
  write(frame: FrameSpec | Buffer): void {
    if (this.socket.writable) this.socket.write(Buffer.isBuffer(frame) ? frame : encodeFrame(frame));
  }

  /** Writes a masked text frame. `text` may be a Buffer holding invalid UTF-8. */
  sendText(text: string | Buffer): void {
    this.write({ opcode: Opcode.TEXT, payload: text });
  }

  /** Writes a masked binary frame. */
  sendBinary(data: Buffer): void {
    this.write({ opcode: Opcode.BINARY, payload: data });
  }

  /** Writes a close frame and keeps the TCP connection open (call `end` or `destroy` later). */
  sendClose(code?: number, reason = ''): void {
    this.#closeSent = true;
    this.write({ opcode: Opcode.CLOSE, payload: closePayload(code, reason) });
  }

  /**
   * Finishes a close the polite way: echoes the server's close frame if it sent one and we did
   * not, then ends TCP, and resolves once the connection is fully closed.
   */
  async end(): Promise<void> {
    if (!this.#closeSent && this.frames.some((frame) => frame.kind === 'close')) this.sendClose(1000);
    this.socket.end();
    await this.ended;
  }

  /** Drops TCP at once, without a close frame. */
  destroy(): Promise<void> {
    this.socket.destroy();
    return this.ended;
  }

  /**
   * Resolves with the next unread frame; rejects after `timeout` ms or once TCP closed with
   * nothing left. One reader at a time (a second concurrent call replaces the first's wake-up).
   */
  async next(timeout = 3000): Promise<ServerFrame> {
    const deadline = Date.now() + timeout;
    for (;;) {
      const frame = this.#unread.shift();
      if (frame) return frame;
      if (this.socket.destroyed) throw new Error('connection closed; no frame left');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeout} ms`);
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, left);
        this.#wake = () => {
          clearTimeout(timer);
          wake();
        };
      });
    }
  }

  /** The next text frame parsed as JSON, skipping frames of other kinds (throws on a close). */
  async nextJson(timeout = 3000): Promise<{ type: string; [field: string]: unknown }> {
    const deadline = Date.now() + timeout;
    for (;;) {
      const frame = await this.next(Math.max(1, deadline - Date.now()));
      if (frame.kind === 'close') throw new Error(`server closed with ${frame.code} ${frame.reason}`);
      if (frame.kind === 'text') return JSON.parse(frame.text);
    }
  }

  /** Unread frames, consumed. */
  drain(): ServerFrame[] {
    return this.#unread.splice(0);
  }

  #notify() {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #push(frame: ServerFrame) {
    this.frames.push(frame);
    this.#unread.push(frame);
    if (frame.kind === 'close') this.#resolveClose({ code: frame.code, reason: frame.reason });
    this.#notify();
  }

  /** Parses server frames (unmasked, per RFC 6455; a masked one is unmasked anyway). */
  #read(chunk: Buffer) {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const buffer = this.#buffer;
      if (buffer.length < 2) return;
      const first = buffer[0] as number;
      const second = buffer[1] as number;
      let offset = 2;
      let length = second & 0x7f;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      const masked = (second & 0x80) !== 0;
      const key = masked ? buffer.subarray(offset, offset + 4) : undefined;
      if (masked) offset += 4;
      if (buffer.length < offset + length) return;
      const payload = Buffer.from(buffer.subarray(offset, offset + length));
      if (key) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (key[i & 3] as number);
      this.#buffer = buffer.subarray(offset + length);
      this.#frame((first & 0x80) !== 0, first & 0x0f, payload);
    }
  }

  #frame(fin: boolean, opcode: number, payload: Buffer) {
    if (opcode === Opcode.CLOSE) {
      this.#push({
        kind: 'close',
        code: payload.length >= 2 ? payload.readUInt16BE(0) : undefined,
        reason: payload.subarray(2).toString('utf8'),
      });
      return;
    }
    if (opcode === Opcode.PING || opcode === Opcode.PONG) {
      this.#push({ kind: opcode === Opcode.PING ? 'ping' : 'pong', data: payload });
      return;
    }
    if (opcode !== Opcode.CONTINUATION) this.#fragmentOpcode = opcode;
    this.#fragments.push(payload);
    if (!fin) return;
    const data = Buffer.concat(this.#fragments);
    this.#fragments = [];
    if (this.#fragmentOpcode === Opcode.TEXT) this.#push({ kind: 'text', text: data.toString('utf8') });
    else this.#push({ kind: 'binary', data });
  }
}
