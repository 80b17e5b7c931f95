import { utf8Length } from './encode.ts';

/*
 * What an engine hands back as a result is rarely plain JSON: message objects, class instances,
 * errors, maps, cycles, BigInt, functions, megabytes of text. `publishTask` refuses what it could
 * not send; a task handle (and so every bridge) turns it into a bounded, plain JSON value a
 * dashboard can show instead. The markers below are what a dashboard then sees in its place.
 */

/** Stands for an object or array already on the path to it (a cycle). */
export const CIRCULAR_MARKER = '[Circular]';

/** Default budget of a result: bytes of its JSON, UTF-8. */
export const DEFAULT_MAX_RESULT_BYTES = 16_384;

/** Smallest budget accepted: room for a short value and its markers. */
export const MIN_MAX_RESULT_BYTES = 256;

/**
 * Room kept, while a container is open, for the marker that ends it if the budget runs out:
 * `,"…":"[9007199254740991 more keys]"` is 36 bytes.
 */
const MARKER_RESERVE = 48;

/** How `toDisplayable` bounds a value. */
export interface DisplayableOptions {
  /** Most bytes of the value's JSON (UTF-8); at least `MIN_MAX_RESULT_BYTES`. */
  readonly maxBytes: number;
  /** Most levels of nesting; a deeper array or object becomes `[Array(n)]` or `[Object]`. */
  readonly maxDepth: number;
  /**
   * Turns an object an engine knows into a plainer value before it is walked (a LangChain
   * message into `{ type, content }`); `undefined` keeps the object as it is.
   */
  readonly replace?: (value: object) => unknown;
}

/**
 * Turns any value into plain JSON of at most `maxBytes` and `maxDepth` levels, for a dashboard:
 *
 * - `toJSON()` is honoured (a `Date` gives its ISO string); an `Error` gives `{ name, message }`
 *   (and its `code` when it has one); a `Map` gives its `[key, value]` pairs, a `Set` its values;
 *   binary data gives `[Uint8Array(n)]`; a class instance gives its own enumerable properties.
 * - `bigint` gives its decimal digits; `NaN` and the infinities their names; a function
 *   `[Function name]`; a symbol its description; `undefined` is left out, as JSON does.
 * - An object met again on its own path is `[Circular]`; one nested deeper than `maxDepth` is
 *   `[Object]` or `[Array(n)]`; a property whose getter throws is `[Unreadable]`.
 * - Past `maxBytes`, a string ends with `…[+N chars]`, an array with the item `[… N more items]`,
 *   an object with the key `…` set to `[N more keys]`, and nothing more is added anywhere.
 *
 * @param value Anything.
 * @param options The bounds.
 *
 * @returns A JSON value whose serialisation is at most `maxBytes` bytes; `undefined` only for a
 *   value JSON leaves out (`undefined` itself).
 */
export function toDisplayable(value: unknown, options: DisplayableOptions): unknown {
  const { maxBytes, maxDepth, replace } = options;
  let used = 0;
  let exhausted = false;
  const path = new Set<object>();

  /** Bytes left for a value, keeping room for the markers of the containers still open. */
  const room = () => maxBytes - used;

  /** A string cut to fit `bytes` of JSON, with its marker; `undefined` when even that cannot fit. */
  const cutString = (text: string, bytes: number): string | undefined => {
    const marker = (left: number) => `…[+${left} chars]`;
    let keep = Math.min(text.length, Math.max(0, bytes));
    for (;;) {
      // Never split a surrogate pair.
      if (keep > 0 && /[\ud800-\udbff]/.test(text[keep - 1] as string)) keep--;
      const candidate = text.slice(0, keep) + marker(text.length - keep);
      const size = utf8Length(JSON.stringify(candidate));
      if (size <= bytes) return candidate;
      if (keep === 0) return undefined;
      keep = Math.max(0, Math.min(keep - 1, Math.floor((keep * bytes) / size) - 1));
    }
  };

  /** Adds a leaf: its JSON size, or a cut string; `undefined` when it does not fit at all. */
  const leaf = (json: unknown): unknown => {
    if (typeof json === 'string') {
      // A string longer than the room left cannot fit (a character is a byte at least): it is
      // cut without serialising the whole of it first.
      const size = json.length + 2 > room() ? Number.POSITIVE_INFINITY : utf8Length(JSON.stringify(json));
      if (size <= room()) {
        used += size;
        return json;
      }
      exhausted = true;
      const cut = cutString(json, room());
      if (cut === undefined) return undefined;
      used += utf8Length(JSON.stringify(cut));
      return cut;
    }
    const size = String(json).length;
    if (size > room()) {
      exhausted = true;
      return undefined;
    }
    used += size;
    return json;
  };

  const walk = (input: unknown, depth: number): unknown => {
    switch (typeof input) {
      case 'string':
        return leaf(input);
      case 'number':
        return leaf(Number.isFinite(input) ? input : String(input));
      case 'boolean':
        return leaf(input);
      case 'bigint':
        return leaf(input.toString());
      case 'symbol':
        return leaf(input.description === undefined ? 'Symbol()' : `Symbol(${input.description})`);
      case 'function':
        return leaf(`[Function${input.name ? ` ${input.name}` : ''}]`);
      case 'undefined':
        return undefined;
    }
    if (input === null) return leaf(null);
    return walkObject(input as object, depth);
  };

  const walkObject = (input: object, depth: number): unknown => {
    if (path.has(input)) return leaf(CIRCULAR_MARKER);
    let plain: unknown = input;
    try {
      const replaced = replace?.(input);
      if (replaced !== undefined) plain = replaced;
      else plain = plainOf(input);
    } catch {
      return leaf('[Unreadable]');
    }
    if (plain !== input) {
      // A replacement or conversion is walked as given, once: its own `toJSON` is not called.
      if (typeof plain !== 'object' || plain === null) return walk(plain, depth);
      if (path.has(plain)) return leaf(CIRCULAR_MARKER);
    }
    const object = plain as object;
    if (depth > maxDepth) return leaf(Array.isArray(object) ? `[Array(${object.length})]` : '[Object]');
    path.add(input);
    path.add(object);
    const [usedBefore, exhaustedBefore] = [used, exhausted];
    try {
      return Array.isArray(object) ? walkArray(object, depth) : walkRecord(object, depth);
    } catch {
      // A proxy whose traps throw, an array whose length getter throws: shown as unreadable.
      [used, exhausted] = [usedBefore, exhaustedBefore];
      return leaf('[Unreadable]');
    } finally {
      path.delete(input);
      path.delete(object);
    }
  };

  const walkArray = (items: readonly unknown[], depth: number): unknown[] | undefined => {
    if (2 + MARKER_RESERVE > room()) {
      exhausted = true;
      return undefined;
    }
    used += 2 + MARKER_RESERVE;
    const out: unknown[] = [];
    let index = 0;
    for (; index < items.length && !exhausted; index++) {
      const comma = out.length > 0 ? 1 : 0;
      used += comma;
      let item: unknown;
      try {
        item = items[index];
      } catch {
        item = '[Unreadable]';
      }
      let walked = walk(item, depth + 1);
      // As JSON does: `undefined` becomes null in an array.
      if (walked === undefined && !exhausted) walked = leaf(null);
      if (walked === undefined) {
        used -= comma;
        break;
      }
      out.push(walked);
    }
    used -= MARKER_RESERVE;
    const left = items.length - index;
    if (left > 0) {
      const marker = `[… ${left} more items]`;
      out.push(marker);
      used += utf8Length(JSON.stringify(marker)) + (out.length > 1 ? 1 : 0);
    }
    return out;
  };

  const walkRecord = (record: object, depth: number): Record<string, unknown> | undefined => {
    if (2 + MARKER_RESERVE > room()) {
      exhausted = true;
      return undefined;
    }
    used += 2 + MARKER_RESERVE;
    const out: Record<string, unknown> = {};
    let entries = 0;
    const keys = Object.keys(record);
    let index = 0;
    for (; index < keys.length && !exhausted; index++) {
      const key = keys[index] as string;
      let item: unknown;
      try {
        item = (record as Record<string, unknown>)[key];
      } catch {
        item = '[Unreadable]';
      }
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
      const keyBytes = utf8Length(JSON.stringify(key)) + 1 + (entries > 0 ? 1 : 0);
      if (keyBytes > room()) {
        exhausted = true;
        break;
      }
      used += keyBytes;
      const walked = walk(item, depth + 1);
      if (walked === undefined) {
        used -= keyBytes;
        if (exhausted) break;
        continue;
      }
      out[key] = walked;
      entries++;
    }
    used -= MARKER_RESERVE;
    const left = keys.length - index;
    if (left > 0) {
      const marker = `[${left} more keys]`;
      out['…'] = marker;
      used += utf8Length(JSON.stringify(marker)) + utf8Length(JSON.stringify('…')) + 1 + (entries > 0 ? 1 : 0);
    }
    return out;
  };

  return walk(value, 1);
}

/** The value JSON would see for an object other than a plain object or array, before walking. */
function plainOf(input: object): unknown {
  if (Array.isArray(input)) return input;
  if (input instanceof Error) {
    const code = (input as { code?: unknown }).code;
    return {
      name: input.name,
      message: input.message,
      ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
    };
  }
  if (typeof (input as { toJSON?: unknown }).toJSON === 'function') {
    if (input instanceof Date) return Number.isNaN(input.getTime()) ? 'Invalid Date' : input.toISOString();
    return (input as { toJSON(): unknown }).toJSON();
  }
  if (input instanceof Map) return [...input.entries()];
  if (input instanceof Set) return [...input.values()];
  if (ArrayBuffer.isView(input)) return `[${input.constructor.name}(${input.byteLength})]`;
  if (input instanceof ArrayBuffer) return `[ArrayBuffer(${input.byteLength})]`;
  if (typeof (input as { then?: unknown }).then === 'function') return '[Promise]';
  return input;
}
