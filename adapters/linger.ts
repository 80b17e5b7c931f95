/**
 * A lingering close for requests answered before their body was read (the 413 of an oversized
 * ingest, a 401, a 415), shared by the three adapters. Web APIs only.
 *
 * WHY: a server that answers such a request and closes the connection while the client is still
 * writing leaves unread bytes in its kernel buffer, so closing sends a reset, and the client's
 * kernel drops the answer it had not read yet: the client sees EPIPE or ECONNRESET and no
 * status. Node and Bun close that way as soon as the answer is written (for a client that sent
 * `Connection: close`: measured in 8 and 40 of 50 posts of 2 MB); Deno instead reads a body
 * nobody wants for as long as the client sends it, or holds the connection while it dribbles.
 *
 * So the answer's status, headers and body go out at once, but its end is held back while the
 * rest of the request body is read and thrown away; once the client has sent it all, the answer
 * ends and the runtime closes (or keeps) the connection as usual, with nothing left unread. A
 * client that sends more than `maxBytes` after the answer, or is still sending after `maxMs`, has
 * its connection cut instead (the runtime's abort: the answer's stream errors; on Node the socket
 * is destroyed), so a client that never stops holds nothing longer than that.
 *
 * Not covered: on Deno, a client that dribbles the body (a few bytes at a time, never reaching
 * `maxBytes`) usually keeps its connection after `maxMs` (cut in 1 of 4 tries here): once a
 * handler has read from a request body, Deno does not reliably end the connection when the
 * answer's stream errors (it does for a flood), and it offers a handler no other way to close
 * one. Deno has no request timeout either, so such a client holds one connection, idle.
 *
 * @module
 */

/** How much of a body the server reads and discards after answering before it, and for how long. */
export interface LingerLimits {
  /** Bytes of the unread body read and discarded at most; past them the connection is cut. */
  maxBytes: number;
  /** Ms the client has to finish sending the body once answered; then the connection is cut. */
  maxMs: number;
}

/**
 * The defaults: 16 MiB and 5 s. 16 MiB is 16 times the default `maxIngestBytes`, read at memory
 * speed on a local link, and nothing of it is kept; 5 s lets a client on a slow link (3.2 MB/s
 * for a 16 MiB body) finish, as Node's keep-alive timeout does. A hostile client is cut after
 * whichever comes first.
 */
export const LINGER_LIMITS: LingerLimits = { maxBytes: 16 * 1024 * 1024, maxMs: 5_000 };

/** Why a held answer is cut: the client sent past the limits. */
const CUT = new Error('request body not finished within the linger limits');

/**
 * Answers `request` with `answer` (the app), and holds the answer open while whatever of its
 * body the app left unread is discarded (see the module). The answer is returned as is when
 * nothing is left: a `GET` or `HEAD`, or a body the app read to its end.
 *
 * A body without a declared length (chunked) is handed to the app through a stream of its own,
 * so that one the app stopped reading half-way (hono's `bodyLimit` past its limit keeps its
 * reader) can still be discarded; a body with a length is handed over as it is.
 *
 * @param request The request.
 * @param answer Answers it: the app's `fetch`, with the runtime's other arguments bound.
 * @param limits The bounds of the discarding.
 * @param cut Ends the connection at once, where the runtime offers it (Node: the socket's
 *   `destroy`); by default the held answer's stream errors, which aborts the connection.
 *
 * @returns The answer to send.
 */
export async function answerDiscardingBody(
  request: Request,
  answer: (request: Request) => Response | Promise<Response>,
  limits: LingerLimits = LINGER_LIMITS,
  cut?: () => void,
): Promise<Response> {
  // First, so a GET never builds what `body` builds (on Node, the whole standard Request).
  if (request.method === 'GET' || request.method === 'HEAD') return answer(request);
  let source: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let ended = false;
  if (request.body !== null && request.headers.get('content-length') === null) {
    const reader = request.body.getReader();
    source = reader;
    const relay = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = await reader.read();
        if (!next.done) return controller.enqueue(next.value);
        ended = true;
        controller.close();
      },
    });
    request = new Request(request, { body: relay, duplex: 'half' } as RequestInit);
  }
  const response = await answer(request);
  if (source === undefined) {
    if (request.bodyUsed || request.body === null || request.body.locked) return response;
    source = request.body.getReader();
  } else if (ended) return response;
  if (response.status === 101) return response;
  return held(response, discard(source, limits), cut);
}

/** `response`, its end held back until `finished` says whether the body ended within the limits. */
function held(response: Response, finished: Promise<boolean>, cut: (() => void) | undefined): Response {
  const answer = response.body?.getReader();
  // Without a declared length, the runtime writes the answer chunked and ends it when the stream
  // closes: with one, it would end the answer after that many bytes, without waiting.
  const headers = new Headers(response.headers);
  headers.delete('content-length');
  let answered = answer === undefined;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!answered) {
        const next = await (answer as ReadableStreamDefaultReader<Uint8Array>).read();
        if (!next.done) return controller.enqueue(next.value);
        answered = true;
      }
      if (await finished) return controller.close();
      if (cut) {
        cut();
        controller.close();
      } else controller.error(CUT);
    },
    cancel(reason) {
      return answer?.cancel(reason);
    },
  });
  return new Response(stream, { status: response.status, statusText: response.statusText, headers });
}

/**
 * Reads `reader` to its end, throwing the bytes away. Resolves true when the body ended within
 * the limits, false when it went past them or failed (the client went away); the reader is
 * cancelled then.
 */
async function discard(reader: ReadableStreamDefaultReader<Uint8Array>, limits: LingerLimits): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), limits.maxMs);
  });
  let bytes = 0;
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), expired]);
      if (next === false) break;
      if (next.done) return true;
      bytes += next.value.byteLength;
      if (bytes > limits.maxBytes) break;
    }
  } catch {
    // The body failed: the client is gone, nothing to wait for.
  } finally {
    clearTimeout(timer);
  }
  reader.cancel().catch(() => {});
  return false;
}

/**
 * Reads and discards what is left of `request`'s body, within `limits`, before the caller
 * answers: for a runtime that offers no way to hold an answer's end while the body is read (a
 * Worker: workerd resets about half the connections answered 413 with 2 MB unread, and answers
 * every one after this). Nothing is read of a body already read, locked (a reader holds it) or
 * absent.
 *
 * @param request The request answered early.
 * @param limits The bounds of the discarding.
 *
 * @returns Whether nothing was left unread: the body ended within the limits, or there was none to read.
 */
export async function discardUnreadBody(request: Request, limits: LingerLimits = LINGER_LIMITS): Promise<boolean> {
  if (request.body === null || request.bodyUsed || request.body.locked) return true;
  return discard(request.body.getReader(), limits);
}
