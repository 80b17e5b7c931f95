import type { AgentUpdate, BatchUpdate, UnsequencedUpdate } from './schemas.ts';

/**
 * Whether a value nests arrays and objects more than `limit` levels deep. Iterative, so a hostile
 * depth cannot overflow the stack; a cycle counts as too deep.
 *
 * @param value The value, e.g. an update's `result`.
 * @param limit Most levels allowed; a scalar has depth 0, `{}` and `[]` depth 1.
 *
 * @returns `true` when the value nests deeper than `limit`.
 *
 * @internal
 */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const stack: unknown[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const node = stack.pop() as object;
    const depth = depths.pop() as number;
    if (depth > limit) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (typeof child === 'object' && child !== null) {
        stack.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}

/** Any character outside ASCII (U+0080 and up). */
const NON_ASCII = /[\u0080-\uffff]/;

/**
 * Bytes of a string in UTF-8, without encoding it.
 *
 * @internal
 */
export function utf8Length(text: string): number {
  let bytes = text.length;
  // Mostly ASCII: the native regex scan finds the first other character, the loop starts there.
  const first = text.search(NON_ASCII);
  if (first < 0) return bytes;
  for (let i = first; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) bytes += 1;
    else if (code >= 0xd800 && code <= 0xdbff) {
      // A surrogate pair: two UTF-16 units, four bytes.
      i++;
      bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}

/**
 * Bytes a string costs where it is kept: its UTF-8 length, or, when it has a character beyond
 * U+00FF, twice its length in UTF-16 units if that is more (a JavaScript engine then holds every
 * character in two bytes). What the byte limits count, so they bound what the process holds.
 *
 * @internal
 */
export function heldBytes(text: string): number {
  let bytes = text.length;
  const first = text.search(NON_ASCII);
  if (first < 0) return bytes;
  let wide = false;
  for (let i = first; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code > 0xff) wide = true;
    if (code < 0x800) bytes += 1;
    else if (code >= 0xd800 && code <= 0xdbff) {
      i++;
      bytes += 2;
    } else bytes += 2;
  }
  return wide ? Math.max(bytes, 2 * text.length) : bytes;
}

/**
 * Serialises each update once, whatever number of frames, batches, queues and sockets it goes
 * to, and builds `batch_update` frames from the serialised updates by concatenation.
 *
 * @internal
 */
export interface UpdateEncoder {
  /**
   * Serialises an update before the broker numbers it; throws when it cannot be serialised.
   * Its wire JSON is then this plus `seq` and `epoch`, with no second serialisation.
   */
  body(update: UnsequencedUpdate): string;
  /** The update's JSON; throws when it cannot be serialised. */
  json(update: AgentUpdate): string;
  /** Bytes of the update's JSON in UTF-8 (what queue limits count). */
  sizeOf(update: AgentUpdate): number;
  /**
   * Parses an update's wire JSON, as a store kept it, and remembers that string as its JSON: an
   * update read back costs no second serialisation, and no second copy of its text.
   */
  adopt(json: string): AgentUpdate;
  /**
   * A `batch_update` frame of the updates; an update that cannot be serialised is left out and
   * reported to `onFailure`. `undefined` when none could be.
   */
  batch(
    agentId: string,
    updates: readonly AgentUpdate[],
    source: BatchUpdate['source'],
    onFailure: (update: AgentUpdate, error: unknown) => void,
  ): string | undefined;
}

/**
 * Creates an update encoder with a cache that lives as long as the updates it describes.
 *
 * @internal
 */
export function createUpdateEncoder(): UpdateEncoder {
  const wire = new WeakMap<object, string>();
  const bodies = new WeakMap<object, string>();
  const json = (update: AgentUpdate): string => {
    let text = wire.get(update);
    if (text !== undefined) return text;
    const body = bodies.get(update);
    // `epoch` is `[A-Za-z0-9_-]` (EpochSchema): nothing to escape.
    text =
      body !== undefined && update.seq !== undefined
        ? `${body.slice(0, -1)},"seq":${update.seq},"epoch":"${update.epoch}"}`
        : JSON.stringify(update);
    bodies.delete(update);
    wire.set(update, text);
    return text;
  };
  return {
    body(update) {
      let text = bodies.get(update);
      if (text === undefined) {
        text = JSON.stringify(update);
        bodies.set(update, text);
      }
      return text;
    },
    json,
    sizeOf: (update) => utf8Length(json(update)),
    adopt(text) {
      const update = JSON.parse(text) as AgentUpdate;
      wire.set(update, text);
      return update;
    },
    batch(agentId, updates, source, onFailure) {
      const entries: string[] = [];
      for (const update of updates) {
        try {
          // Same shape as `{ type, content }`; `type` is one of two literals, no escaping needed.
          entries.push(`{"type":"${update.type}","content":${json(update)}}`);
        } catch (error) {
          onFailure(update, error);
        }
      }
      if (entries.length === 0) return undefined;
      // Agent ids are `[A-Za-z0-9._:-]` (AgentIdSchema): nothing to escape.
      return `{"type":"batch_update","agent_id":"${agentId}","source":"${source}","updates":[${entries.join(',')}],"timestamp":"${new Date().toISOString()}"}`;
    },
  };
}
