/**
 * Fuzzing the receive path of the demo server on Node, over raw sockets
 * (`test/helpers/raw-socket.ts`): thousands of malformed frames of every class, from a seeded
 * PRNG, on several connections at once, while a watcher of another agent must get every update
 * exactly once and in order. At the end the process must be alive and every counter must equal
 * what the fuzzer sent, class by class.
 *
 * Reproduce a failure with the seed printed at the start (and in the test's name):
 * `FUZZ_SEED=<seed> node --import tsx scripts/run-tests.ts test/fuzz.test.ts`. Each fuzzing
 * connection draws from its own PRNG derived from the seed, so the frames each one sends do not
 * depend on timing. `FUZZ_FRAMES` changes how many malformed frames are sent (default 12 000).
 *
 * The second suite checks the per-connection inbound budget (`MAX_INBOUND_RATE`,
 * `MAX_INBOUND_BURST`) with small values.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerMessage, TaskUpdate } from '../plugin/index.ts';
import { TestClient } from './helpers/client.ts';
import { validateServerFrame } from './helpers/contract.ts';
import { newAgentId } from './helpers/ids.ts';
import { closePayload, encodeFrame, type FrameSpec, Opcode, RawSocket } from './helpers/raw-socket.ts';
import { ingest, node, type ServerHandle, startServer, stats, task } from './helpers/server.ts';
import { sleep, waitFor } from './helpers/wait.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 32);
const FRAMES = Number(process.env.FUZZ_FRAMES ?? 12_000);
console.log(`fuzz: seed ${SEED} (reproduce with FUZZ_SEED=${SEED}), ${FRAMES} malformed frames`);

/** Concurrent fuzzing connections (each on its own agent). */
const WORKERS = 6;
/** Answers a connection may wait for before it sends more. */
const WINDOW = 48;
/**
 * The hub's `maxMessageSize`. Large enough that 5,000-deep arrays (10,000 bytes) fit under it;
 * `ws` refuses frames over four times it by itself.
 */
const MAX = 16_384;
const WS_MAX = 4 * MAX;
/** Updates published to the watched agent over the run. */
const UPDATES = 300;

// ---- seeded PRNG -------------------------------------------------------------------------

/** mulberry32: small, fast, good enough to pick frames. */
class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** 0 ≤ n < max */
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  /** min ≤ n ≤ max */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = this.int(256);
    return out;
  }
  /** Printable ASCII. */
  ascii(length: number): string {
    let out = '';
    for (let i = 0; i < length; i++) out += String.fromCharCode(32 + this.int(95));
    return out;
  }
  /** Mixed text: ASCII, accents, CJK, emoji, control characters (always valid UTF-8 on the wire). */
  unicode(length: number): string {
    const pieces = [
      'a',
      'Z',
      '{',
      '}',
      '"',
      ':',
      ',',
      '[',
      ']',
      '\\',
      'é',
      'ß',
      '中',
      '文',
      '€',
      '😀',
      '🏓',
      '\u0000',
      '\n',
    ];
    let out = '';
    for (let i = 0; i < length; i++) out += this.pick(pieces);
    return out;
  }
}

/** One PRNG stream per worker, derived from the seed. */
const workerSeed = (worker: number) => (SEED ^ Math.imul(worker + 1, 0x9e3779b9)) >>> 0;

// ---- the model: what the server must answer ---------------------------------------------

type AnswerCode = 'invalid_json' | 'invalid_message' | 'unknown_type' | 'binary_not_supported';
type CloseKind = 'message_too_big' | 'invalid_utf8' | 'protocol_error';

type Expect =
  /** The hub answers with this frame (or nothing, for a valid pong); the connection stays. */
  | { kind: 'answer'; answer: AnswerCode | 'pong' | 'none' }
  /** The connection is closed with `code`, counted as `error`; `reachesHub`: the hub sees the frame. */
  | { kind: 'close'; code: number; error: CloseKind; reachesHub: boolean };

/** One fuzz case: one WebSocket message (maybe in fragments) or one broken frame sequence. */
interface Case {
  cls: string;
  frames: Buffer[];
  expect: Expect;
  /** A short, printable description for failure messages. */
  preview: string;
}

/** Timestamps the hub must accept (everything else the fuzzer puts in `timestamp` is invalid). */
const VALID_TIMESTAMPS = new Set(['2026-11-27T13:37:00.000Z', '2001-02-03T04:05:06.789Z', '2099-12-31T23:59:59.999Z']);
const BAD_TIMESTAMPS: unknown[] = [
  'yesterday',
  '',
  5,
  null,
  {},
  [],
  true,
  '2026-02-30T00:00:00.000Z',
  '2026-13-01T00:00:00.000Z',
  '2026-11-27T25:00:00.000Z',
  '27/11/2026',
  ['2026-11-27T13:37:00.000Z'],
];

/**
 * The documented answer to one complete message (docs/protocol.md, "Answers to bad input"), written from
 * the spec, not from the hub's code.
 */
function classify(bytes: Buffer, binary: boolean): Expect {
  if (bytes.length > WS_MAX) return { kind: 'close', code: 1009, error: 'message_too_big', reachesHub: false };
  if (bytes.length > MAX) return { kind: 'close', code: 1009, error: 'message_too_big', reachesHub: true };
  if (binary) return { kind: 'answer', answer: 'binary_not_supported' };
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { kind: 'answer', answer: 'invalid_json' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { kind: 'answer', answer: 'invalid_message' };
  }
  const message = value as Record<string, unknown>;
  if (typeof message.type !== 'string') return { kind: 'answer', answer: 'invalid_message' };
  if (message.type !== 'ping' && message.type !== 'pong') return { kind: 'answer', answer: 'unknown_type' };
  if (Object.hasOwn(message, 'timestamp') && !VALID_TIMESTAMPS.has(message.timestamp as string)) {
    return { kind: 'answer', answer: 'invalid_message' };
  }
  return { kind: 'answer', answer: message.type === 'ping' ? 'pong' : 'none' };
}

const preview = (data: Buffer | string) => {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 60)}…(${text.length})` : text);
  return shown;
};

/** Splits `bytes` into `parts` fragments at random offsets (may split a UTF-8 sequence: legal). */
function fragment(rng: Rng, opcode: number, bytes: Buffer, parts: number): Buffer[] {
  if (parts <= 1) return [encodeFrame({ opcode, payload: bytes })];
  const cuts = new Set<number>();
  for (let i = 1; i < parts; i++) cuts.add(rng.int(bytes.length + 1));
  const points = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
  const frames: Buffer[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    frames.push(
      encodeFrame({
        opcode: i === 0 ? opcode : Opcode.CONTINUATION,
        payload: bytes.subarray(points[i], points[i + 1]),
        fin: i + 2 === points.length,
      }),
    );
  }
  return frames;
}

function textCase(rng: Rng, cls: string, text: string | Buffer, parts = 1): Case {
  const bytes = typeof text === 'string' ? Buffer.from(text) : text;
  return {
    cls,
    frames: fragment(rng, Opcode.TEXT, bytes, parts),
    expect: classify(bytes, false),
    preview: preview(bytes),
  };
}

function closingCase(cls: string, frames: FrameSpec[], code: number, error: CloseKind, what: string): Case {
  return {
    cls,
    frames: frames.map(encodeFrame),
    expect: { kind: 'close', code, error, reachesHub: false },
    preview: what,
  };
}

// ---- generators, one per class -----------------------------------------------------------

const NOT_JSON = [
  'NaN',
  'undefined',
  "{'type':'ping'}",
  '{"type":"ping",}',
  '{"type":"ping"}{"type":"ping"}',
  '\uFEFF{"type":"ping"}',
  '{"type":"ping"',
  '{"type":"ping"}}',
  '0x10',
  '01',
  '.5',
  '+1',
  'Infinity',
  '-',
  '"unterminated',
  '{"type":"ping"}\u0000',
  '//comment\n{"type":"ping"}',
  '[1,2,,3]',
  'tru',
  'nul',
  ' ',
  '\n\t ',
  '{"type":"\u0001"}',
  '{"type":"ping","x":"\\x41"}',
  '{"type":"ping","x":"\\u12"}',
  '{type:"ping"}',
  'ping',
];

const VALID_MESSAGES = [
  '{"type":"ping"}',
  '{"type":"pong"}',
  ' {"type" : "ping" }\n',
  '{"type":"subscribe","type":"ping"}',
  '{"type":"ping","__proto__":{"type":"subscribe"}}',
  '{"type":"ping","x":"\\ud800"}',
  '{"type":"pong","emoji":"🏓","nested":[1,{"a":null}]}',
  '{"timestamp":"2026-11-27T13:37:00.000Z","type":"pong"}',
];

const SERVER_ONLY = ['task_update', 'status_update', 'batch_update', 'connection_established', 'error'];
const UNKNOWN_TYPES = [
  'subscribe',
  'unsubscribe',
  'PING',
  'Ping',
  'PONG',
  ' ping',
  'ping ',
  'ping\u0000',
  'ping\n',
  '',
  'hello',
  'auth',
  '__proto__',
  'constructor',
  'toString',
  '🏓',
  'пинг',
];

/** A JSON value that is not a string, for `type`. */
function notAString(rng: Rng): unknown {
  return rng.pick<unknown>([5, -0.5, 1e300, null, true, false, [], ['ping'], {}, { name: 'ping' }, [[['ping']]]]);
}

/** Random JSON values (strings, numbers, arrays, objects), bounded. */
function jsonValue(rng: Rng, depth = 0): unknown {
  const roll = rng.int(depth > 2 ? 4 : 6);
  if (roll === 0) return rng.range(-1000, 1000);
  if (roll === 1) return rng.unicode(rng.range(0, 12));
  if (roll === 2) return rng.pick([null, true, false]);
  if (roll === 3) return rng.ascii(rng.range(0, 8));
  if (roll === 4) return Array.from({ length: rng.range(0, 3) }, () => jsonValue(rng, depth + 1));
  return Object.fromEntries(
    Array.from({ length: rng.range(0, 3) }, () => [rng.ascii(rng.range(1, 6)), jsonValue(rng, depth + 1)]),
  );
}

function serverOnlyMessage(rng: Rng, type: string): Record<string, unknown> {
  const base = { type, agent_id: 'someone-else', timestamp: rng.pick([...VALID_TIMESTAMPS]) };
  switch (type) {
    case 'task_update':
      return { ...base, task_id: 't1', status: 'completed', progress: 100, result: jsonValue(rng) };
    case 'status_update':
      return { ...base, status: 'running', execution_status: { state: 'executing' } };
    case 'batch_update':
      return { ...base, source: 'window', updates: [{ type: 'status_update', content: { ...base, status: 'idle' } }] };
    case 'connection_established':
      return { ...base, connection_id: 'c1', heartbeat_interval: 1, batch_interval: 1 };
    default:
      return { ...base, code: 'invalid_json', message: 'forged' };
  }
}

const deepArrays = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const deepObjects = (depth: number) => `${'{"a":'.repeat(depth)}0${'}'.repeat(depth)}`;

/** Byte sequences that are never valid UTF-8. */
const BAD_UTF8 = [
  [0x80],
  [0xbf],
  [0xc0, 0xaf],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xfe],
  [0xff],
  [0xc3],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
];

const INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535];

type Generator = (rng: Rng) => Case;

const GENERATORS: [cls: string, weight: number, generate: Generator][] = [
  [
    'bad_json',
    13,
    (rng) => {
      const roll = rng.int(4);
      if (roll === 0) return textCase(rng, 'bad_json', rng.pick(NOT_JSON));
      if (roll === 1) return textCase(rng, 'bad_json', rng.ascii(rng.range(1, 300)));
      if (roll === 2) return textCase(rng, 'bad_json', rng.unicode(rng.range(1, 200)));
      // A valid-looking message cut short.
      const whole = JSON.stringify({ type: rng.pick(['ping', 'pong', 'subscribe']), data: jsonValue(rng) });
      return textCase(rng, 'bad_json', whole.slice(0, rng.range(1, whole.length - 1)));
    },
  ],
  ['empty', 3, (rng) => textCase(rng, 'empty', '')],
  [
    'wrong_shape',
    13,
    (rng) => {
      const roll = rng.int(5);
      if (roll === 0) return textCase(rng, 'wrong_shape', JSON.stringify(jsonValue(rng, 2) ?? null));
      if (roll === 1) {
        const fields = Object.fromEntries([['type', notAString(rng)]]);
        return textCase(rng, 'wrong_shape', JSON.stringify({ ...fields, extra: jsonValue(rng, 2) }));
      }
      if (roll === 2) {
        const type = rng.pick(['ping', 'pong']);
        return textCase(rng, 'wrong_shape', JSON.stringify({ type, timestamp: rng.pick(BAD_TIMESTAMPS) }));
      }
      if (roll === 3) {
        return textCase(
          rng,
          'wrong_shape',
          rng.pick([
            '{}',
            '[]',
            '[{"type":"ping"}]',
            '"ping"',
            'null',
            '{"Type":"ping"}',
            '{"TYPE":"pong"}',
            '{"type":1e999}',
            '{"__proto__":{"type":"ping"}}',
            '{"constructor":{"type":"ping"}}',
            '{"type":{"toString":"ping"}}',
          ]),
        );
      }
      return textCase(
        rng,
        'wrong_shape',
        JSON.stringify(Array.from({ length: rng.range(0, 5) }, () => jsonValue(rng))),
      );
    },
  ],
  [
    'unknown_type',
    10,
    (rng) => {
      const type = rng.chance(0.8)
        ? rng.pick(UNKNOWN_TYPES)
        : rng.chance(0.5)
          ? rng.ascii(rng.range(1, 40))
          : 'x'.repeat(rng.range(100, 8000));
      return textCase(rng, 'unknown_type', JSON.stringify({ type, data: jsonValue(rng) }));
    },
  ],
  [
    'server_only_type',
    6,
    (rng) => textCase(rng, 'server_only_type', JSON.stringify(serverOnlyMessage(rng, rng.pick(SERVER_ONLY)))),
  ],
  [
    'binary',
    8,
    (rng) => {
      const data = rng.chance(0.2)
        ? Buffer.from(rng.pick(VALID_MESSAGES))
        : rng.chance(0.1)
          ? Buffer.alloc(0)
          : rng.bytes(rng.range(1, 600));
      const parts = rng.chance(0.2) ? rng.range(2, 4) : 1;
      return {
        cls: 'binary',
        frames: fragment(rng, Opcode.BINARY, data, parts),
        expect: classify(data, true),
        preview: preview(data),
      };
    },
  ],
  [
    'fragmented_text',
    5,
    (rng) => {
      const text = rng.pick([
        rng.pick(NOT_JSON),
        rng.unicode(rng.range(2, 100)),
        JSON.stringify({ type: rng.pick(UNKNOWN_TYPES), x: rng.unicode(10) }),
        rng.pick(VALID_MESSAGES),
        JSON.stringify({ type: 'ping', timestamp: rng.pick(BAD_TIMESTAMPS) }),
      ]);
      return textCase(rng, 'fragmented_text', text, rng.range(2, 5));
    },
  ],
  [
    'deep',
    3,
    (rng) => {
      const depth = rng.chance(0.5) ? 5000 : rng.range(100, 5000);
      const shallower = Math.min(depth, 3000);
      const text = rng.pick([
        deepArrays(depth),
        deepObjects(Math.min(depth, 2000)),
        `{"type":"pong","x":${deepArrays(shallower)}}`,
        `{"type":"ping","meta":{"a":${deepObjects(Math.min(depth, 1500))}}}`,
        `{"type":"ping","timestamp":${deepArrays(shallower)}}`,
        `{"type":"task_update","result":${deepArrays(shallower)}}`,
        `{"type":${deepArrays(shallower)}}`,
        '['.repeat(rng.range(1000, 12_000)),
        `${'['.repeat(depth)}${'}'.repeat(depth)}`,
      ]);
      return textCase(rng, 'deep', text, rng.chance(0.1) ? 3 : 1);
    },
  ],
  [
    'valid',
    4,
    (rng) => {
      const text = rng.chance(0.7)
        ? rng.pick(VALID_MESSAGES)
        : JSON.stringify({ type: rng.pick(['ping', 'pong']), timestamp: rng.pick([...VALID_TIMESTAMPS]) });
      return textCase(rng, 'valid', text);
    },
  ],
  [
    'size_boundary',
    2,
    (rng) => {
      const head = '{"type":"pong","pad":"';
      const roll = rng.int(6);
      // Exactly at the limit (accepted) and one byte over (closed), in ASCII and multi-byte text,
      // where the hub cannot decide from the string's length alone.
      if (roll === 0) return textCase(rng, 'size_boundary', `${head}${'x'.repeat(MAX - head.length - 2)}"}`);
      if (roll === 1) return textCase(rng, 'size_boundary', `${head}${'x'.repeat(MAX - head.length - 1)}"}`);
      if (roll === 2) return textCase(rng, 'size_boundary', '€'.repeat(Math.floor(MAX / 3)));
      if (roll === 3) return textCase(rng, 'size_boundary', '€'.repeat(Math.floor(MAX / 3) + 1));
      if (roll === 4) return textCase(rng, 'size_boundary', '😀'.repeat(MAX / 4 + 1));
      return textCase(rng, 'size_boundary', `${head}${'€'.repeat(Math.floor((MAX - head.length - 2) / 3))}"}`);
    },
  ],
  [
    'over_limit',
    1.5,
    (rng) => {
      const size = rng.range(MAX + 1, WS_MAX);
      const text = rng.chance(0.5)
        ? JSON.stringify({ type: 'pong', pad: 'y'.repeat(size) }).slice(0, size)
        : 'z'.repeat(size);
      return textCase(rng, 'over_limit', text, rng.chance(0.2) ? 3 : 1);
    },
  ],
  [
    'over_ws_limit',
    0.7,
    (rng) => {
      const roll = rng.int(4);
      if (roll === 0) return textCase(rng, 'over_ws_limit', 'w'.repeat(rng.range(WS_MAX + 1, WS_MAX + 2000)));
      if (roll === 1) {
        // Fragments each under the limit, together over it.
        const frames = [0, 1, 2].map((i) =>
          encodeFrame({
            opcode: i === 0 ? Opcode.TEXT : Opcode.CONTINUATION,
            payload: 'f'.repeat(WS_MAX / 2),
            fin: i === 2,
          }),
        );
        return {
          cls: 'over_ws_limit',
          frames,
          expect: { kind: 'close', code: 1009, error: 'message_too_big', reachesHub: false },
          preview: '3 fragments of 2·MAX',
        };
      }
      // A header announcing more than will ever be sent.
      const declared = roll === 2 ? 2n ** 40n : 2n ** 60n;
      return closingCase(
        'over_ws_limit',
        [{ opcode: rng.pick([Opcode.TEXT, Opcode.BINARY]), payload: 'abc', declaredLength: declared }],
        1009,
        'message_too_big',
        `length header ${declared}`,
      );
    },
  ],
  [
    'invalid_utf8',
    1.5,
    (rng) => {
      const bad = Buffer.from(rng.pick(BAD_UTF8));
      const roll = rng.int(4);
      if (roll === 3) {
        // Invalid UTF-8 in a close frame's reason.
        return closingCase(
          'invalid_utf8',
          [{ opcode: Opcode.CLOSE, payload: closePayload(1000, bad) }],
          1007,
          'invalid_utf8',
          `close reason ${bad.toString('hex')}`,
        );
      }
      const bytes =
        roll === 0
          ? Buffer.concat([Buffer.from('{"type":"ping","x":"'), bad, Buffer.from('"}')])
          : roll === 1
            ? Buffer.concat([Buffer.from(rng.ascii(rng.range(0, 30))), bad])
            : Buffer.concat([bad, Buffer.from('{"type":"ping"}')]);
      const parts = rng.chance(0.3) ? rng.range(2, 4) : 1;
      return {
        cls: 'invalid_utf8',
        frames: fragment(rng, Opcode.TEXT, bytes, parts),
        expect: { kind: 'close', code: 1007, error: 'invalid_utf8', reachesHub: false },
        preview: `text ${bytes.toString('hex').slice(0, 60)}`,
      };
    },
  ],
  [
    'protocol',
    2.5,
    (rng) => {
      const ping = '{"type":"ping"}';
      const violations: [string, FrameSpec[]][] = [
        ['unmasked text', [{ opcode: Opcode.TEXT, payload: ping, mask: false }]],
        ['unmasked binary', [{ opcode: Opcode.BINARY, payload: rng.bytes(5), mask: false }]],
        ['unmasked close', [{ opcode: Opcode.CLOSE, payload: closePayload(1000), mask: false }]],
        [
          'reserved opcode',
          [{ opcode: rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), payload: rng.chance(0.5) ? ping : '' }],
        ],
        ['RSV bits on text', [{ opcode: Opcode.TEXT, payload: ping, rsv: rng.range(1, 7) }]],
        ['RSV bits on ping', [{ opcode: Opcode.PING, payload: 'x', rsv: rng.range(1, 7) }]],
        ['continuation without a start', [{ opcode: Opcode.CONTINUATION, payload: ping }]],
        [
          'new message inside a fragmented one',
          [
            { opcode: Opcode.TEXT, payload: '{"type":', fin: false },
            { opcode: rng.pick([Opcode.TEXT, Opcode.BINARY]), payload: '"ping"}' },
          ],
        ],
        ['fragmented ping', [{ opcode: Opcode.PING, payload: 'x', fin: false }]],
        ['control frame over 125 bytes', [{ opcode: Opcode.PING, payload: 'p'.repeat(rng.range(126, 300)) }]],
        ['close with a 1-byte payload', [{ opcode: Opcode.CLOSE, payload: Buffer.from([3]) }]],
        [
          'close with an invalid code',
          [{ opcode: Opcode.CLOSE, payload: closePayload(rng.pick(INVALID_CLOSE_CODES)) }],
        ],
      ];
      const [what, frames] = rng.pick(violations);
      return closingCase('protocol', frames, 1002, 'protocol_error', what);
    },
  ],
];

const TOTAL_WEIGHT = GENERATORS.reduce((sum, [, weight]) => sum + weight, 0);

function generate(rng: Rng): Case {
  let roll = rng.next() * TOTAL_WEIGHT;
  for (const [, weight, make] of GENERATORS) {
    roll -= weight;
    if (roll < 0) return make(rng);
  }
  return (GENERATORS[0] as (typeof GENERATORS)[number])[2](rng);
}

// ---- the run -----------------------------------------------------------------------------

const isMalformed = (c: Case) =>
  c.expect.kind === 'close' || (c.expect.answer !== 'pong' && c.expect.answer !== 'none');

/** What the fuzzer sent, for comparison with the stats. */
class Tally {
  /** Expected growth of each `errors_by_kind` counter. */
  readonly kinds: Record<string, number> = {};
  /** Expected growth of `messages_received`: messages that reached the hub. */
  received = 0;
  /** Cases per class. */
  readonly classes: Record<string, number> = {};
  /** Cases the server must refuse (an `error` answer or a close): the malformed frames. */
  malformed = 0;
  closes = 0;

  count(c: Case) {
    this.classes[c.cls] = (this.classes[c.cls] ?? 0) + 1;
    if (isMalformed(c)) this.malformed++;
    const { expect } = c;
    if (expect.kind === 'close') {
      this.closes++;
      this.kinds[expect.error] = (this.kinds[expect.error] ?? 0) + 1;
      if (expect.reachesHub) this.received++;
      return;
    }
    this.received++;
    if (expect.answer !== 'pong' && expect.answer !== 'none') {
      this.kinds[expect.answer] = (this.kinds[expect.answer] ?? 0) + 1;
    }
  }
}

/** Opens a raw connection and waits for `connection_established`. */
async function openRaw(server: ServerHandle, agentId: string): Promise<RawSocket> {
  const socket = await RawSocket.connect(`${server.ws}/agents/${agentId}/ws`);
  const first = validateServerFrame(await socket.nextJson(5000));
  assert.equal(first.type, 'connection_established');
  return socket;
}

/** Task ids a watcher received, batches unpacked; throws on any frame a watcher should not get. */
function receivedTaskIds(frames: readonly ServerMessage[]): string[] {
  const ids: string[] = [];
  for (const [index, frame] of frames.entries()) {
    if (index === 0) {
      assert.equal(frame.type, 'connection_established');
      continue;
    }
    if (frame.type === 'task_update') ids.push(frame.task_id);
    else if (frame.type === 'batch_update') {
      assert.equal(frame.source, 'window', 'a live watcher only gets window batches');
      for (const entry of frame.updates) ids.push((entry.content as TaskUpdate).task_id);
    } else assert.equal(frame.type, 'ping', `unexpected ${frame.type} frame for the watcher`);
  }
  return ids;
}

describe('fuzzing the receive path (node)', { concurrency: false }, () => {
  let server: ServerHandle;
  before(async () => {
    server = await startServer(node, {
      // The receive path is under test: frames arrive as in the seed protocol, without a snapshot.
      SNAPSHOT: 'off',
      MAX_MESSAGE_SIZE: String(MAX),
      BATCH_INTERVAL_MS: '50',
      HEARTBEAT_INTERVAL_MS: '600000',
      MAX_QUEUE_SIZE: '1000',
      MAX_INBOUND_RATE: '1000000',
      MAX_INBOUND_BURST: '1000000',
    });
  });
  after(() => server?.stop());

  it(`answers ${FRAMES} malformed frames exactly as documented, and a watcher loses nothing (seed ${SEED})`, async (t) => {
    t.diagnostic(`seed ${SEED}`);
    const watched = newAgentId('watched');
    const watcher = await TestClient.connect(`${server.ws}/agents/${watched}/ws`);
    await watcher.next('connection_established');
    const base = await stats(server);

    const tally = new Tally();
    const history: string[] = [];
    let aborted = false;
    const opened = new Set<RawSocket>();
    const endings: Promise<void>[] = [];

    const worker = async (index: number) => {
      const rng = new Rng(workerSeed(index));
      const agentId = newAgentId(`fuzz${index}`);
      const quota = Math.ceil(FRAMES / WORKERS);
      let malformed = 0;
      let caseNo = 0;
      const where = (c: Case) => `seed ${SEED}, worker ${index}, case #${caseNo} (${c.cls}: ${c.preview})`;
      let socket = await openRaw(server, agentId);
      opened.add(socket);
      /** Answers still due, in order, each with the case that asked for it. */
      const due: { answer: string; c: Case; caseNo: number }[] = [];
      const consume = async () => {
        const wanted = due.shift();
        assert.ok(wanted);
        const context = `answer to seed ${SEED}, worker ${index}, case #${wanted.caseNo} (${wanted.c.cls}: ${wanted.c.preview})`;
        const frame = await socket.next(15_000).catch((error: Error) => {
          throw new Error(`${error.message} waiting for ${wanted.answer}, the ${context}`);
        });
        if (frame.kind !== 'text') {
          assert.fail(`${context}: expected ${wanted.answer}, got ${frame.kind} ${JSON.stringify(frame)}`);
        }
        const message = validateServerFrame(JSON.parse(frame.text));
        if (message.type === 'ping') {
          due.unshift(wanted);
          return;
        }
        if (wanted.answer === 'pong') assert.equal(message.type, 'pong', context);
        else {
          assert.equal(message.type, 'error', context);
          assert.equal(message.type === 'error' && message.code, wanted.answer, context);
          assert.ok(message.type === 'error' && message.message.length > 0, context);
        }
      };

      while (malformed < quota && !aborted) {
        const c = generate(rng);
        caseNo++;
        if (isMalformed(c)) malformed++;
        history.push(`worker ${index} #${caseNo} ${c.cls}: ${c.preview}`);
        if (history.length > 50) history.shift();
        socket.write(Buffer.concat(c.frames));
        tally.count(c);
        if (c.expect.kind === 'close') {
          while (due.length > 0) await consume();
          const frame = await socket.next(15_000).catch((error: Error) => {
            throw new Error(
              `${error.message} waiting for close ${c.expect.kind === 'close' && c.expect.code} after ${where(c)}`,
            );
          });
          assert.equal(
            frame.kind,
            'close',
            `expected a close frame after ${where(c)}, got ${JSON.stringify(frame).slice(0, 200)}`,
          );
          assert.equal(frame.kind === 'close' && frame.code, c.expect.code, `close code after ${where(c)}`);
          endings.push(socket.end());
          socket = await openRaw(server, agentId);
          opened.add(socket);
          continue;
        }
        if (c.expect.answer !== 'none') due.push({ answer: c.expect.answer, c, caseNo });
        while (due.length > WINDOW) await consume();
      }
      // A final ping: once its pong is back, the hub has handled every frame before it.
      const sentinel = textCase(rng, 'valid', '{"type":"ping"}');
      socket.write(Buffer.concat(sentinel.frames));
      tally.count(sentinel);
      due.push({ answer: 'pong', c: sentinel, caseNo: ++caseNo });
      while (due.length > 0) await consume();
      socket.sendClose(1000);
      const echo = await socket.closeFrame;
      assert.equal(echo?.code, 1000, `worker ${index}: the server echoes a normal close`);
      await socket.end();
    };

    // The publisher spreads the watched agent's updates over the run, 1 to 3 per request.
    let workersDone = false;
    const publisher = async () => {
      const rng = new Rng(SEED ^ 0x5eed);
      let next = 1;
      while (next <= UPDATES && !aborted) {
        const due = workersDone ? UPDATES : Math.floor((tally.malformed / FRAMES) * UPDATES);
        if (next > due) {
          await sleep(5);
          continue;
        }
        const count = Math.min(UPDATES - next + 1, rng.range(1, 3));
        const body = count === 1 ? task(next) : Array.from({ length: count }, (_, k) => task(next + k));
        const answer = await ingest(server, watched, body);
        assert.equal(answer.status, 202);
        next += count;
      }
    };

    const started = Date.now();
    const publishing = publisher();
    // Handled here too, so a failing publisher stops the workers instead of going unhandled.
    publishing.catch(() => {
      aborted = true;
    });
    try {
      await Promise.all(Array.from({ length: WORKERS }, (_, index) => worker(index)));
      workersDone = true;
      await publishing;
    } catch (error) {
      aborted = true;
      for (const socket of opened) socket.destroy();
      t.diagnostic(`last cases:\n${history.join('\n')}`);
      throw error;
    } finally {
      workersDone = true;
    }
    await Promise.all(endings);
    t.diagnostic(
      `${tally.malformed} malformed frames, ${tally.closes} closing, in ${Date.now() - started} ms: ${JSON.stringify(tally.classes)}`,
    );
    assert.ok(tally.malformed >= FRAMES);
    for (const [cls] of GENERATORS) assert.ok((tally.classes[cls] ?? 0) > 0, `class ${cls} was exercised`);

    // The process survived, printed nothing but its listening line, and still serves.
    assert.equal(server.process.exitCode, null, 'server alive');
    assert.equal(server.process.signalCode, null, 'server alive');
    const printed = server
      .output()
      .split('\n')
      .filter((line) => line.trim() !== '' && !line.startsWith('listening on'));
    assert.deepEqual(printed, [], 'the server printed no error');

    // The watcher got every update, exactly once, in order.
    await waitFor(() => receivedTaskIds(watcher.frames).length >= UPDATES, 10_000, 'all updates at the watcher');
    // Nothing more may arrive (no repeat, nothing late): a window in which nothing must happen, so real time.
    await sleep(200);
    assert.deepEqual(
      receivedTaskIds(watcher.frames),
      Array.from({ length: UPDATES }, (_, k) => `task-${k + 1}`),
    );
    assert.deepEqual(watcher.problems, [], 'every watcher frame matched asyncapi.yaml');
    assert.equal(watcher.socket.readyState, watcher.socket.OPEN);

    // Every counter grew by exactly what was sent, class by class.
    await waitFor(
      async () => (await stats(server)).active_connections === base.active_connections,
      10_000,
      'fuzz connections gone',
    );
    const end = await stats(server);
    const kinds = new Set([...Object.keys(end.errors_by_kind), ...Object.keys(tally.kinds)]);
    const grown: Record<string, number | string> = {};
    const expected: Record<string, number> = {};
    for (const kind of [...kinds].sort()) {
      const now = (end.errors_by_kind as Record<string, number | undefined>)[kind];
      const then = (base.errors_by_kind as Record<string, number | undefined>)[kind] ?? 0;
      grown[kind] = now === undefined ? 'missing from stats' : now - then;
      expected[kind] = tally.kinds[kind] ?? 0;
    }
    assert.deepEqual(grown, expected, `errors_by_kind growth (seed ${SEED})`);
    const errorsSent = Object.values(tally.kinds).reduce((sum, n) => sum + n, 0);
    assert.equal(errorsSent, tally.malformed);
    assert.equal(end.errors - base.errors, errorsSent, 'errors');
    assert.equal(end.messages_received - base.messages_received, tally.received, 'messages_received');
  });
});

describe('inbound frame budget (node)', { concurrency: false }, () => {
  const RATE = 20;
  const BURST = 40;
  let server: ServerHandle;
  before(async () => {
    server = await startServer(node, {
      // The receive path is under test: frames arrive as in the seed protocol, without a snapshot.
      SNAPSHOT: 'off',
      BATCH_INTERVAL_MS: '50',
      HEARTBEAT_INTERVAL_MS: '600000',
      MAX_INBOUND_RATE: String(RATE),
      MAX_INBOUND_BURST: String(BURST),
    });
  });
  after(() => server?.stop());

  it('closes a flooding client with 1008 and counts it once, while other clients keep their own budget', async (t) => {
    const watched = newAgentId('steady');
    const watcher = await TestClient.connect(`${server.ws}/agents/${watched}/ws`);
    await watcher.next('connection_established');
    const base = await stats(server);

    // Within the burst: 30 pings at once are all answered, and the connection stays.
    const bursty = await openRaw(server, newAgentId('bursty'));
    bursty.write(
      Buffer.concat(Array.from({ length: 30 }, () => encodeFrame({ opcode: Opcode.TEXT, payload: '{"type":"ping"}' }))),
    );
    for (let n = 0; n < 30; n++) assert.equal((await bursty.nextJson()).type, 'pong', `pong ${n + 1} of 30`);

    // The flood: 400 pings in one write, on another agent.
    const flooder = await openRaw(server, newAgentId('flood'));
    const updates: Promise<unknown>[] = [];
    for (let n = 1; n <= 10; n++) updates.push(ingest(server, watched, task(n)));
    flooder.write(
      Buffer.concat(
        Array.from({ length: 400 }, () => encodeFrame({ opcode: Opcode.TEXT, payload: '{"type":"ping"}' })),
      ),
    );
    let pongs = 0;
    let closed: number | undefined;
    for (;;) {
      const frame = await flooder.next(5000);
      if (frame.kind === 'close') {
        closed = frame.code;
        break;
      }
      assert.equal(frame.kind, 'text');
      if (frame.kind === 'text') assert.equal(validateServerFrame(JSON.parse(frame.text)).type, 'pong');
      pongs++;
    }
    t.diagnostic(`the flooder got ${pongs} pongs before its close (${closed})`);
    assert.equal(closed, 1008, 'a flood is closed with 1008 (policy violation)');
    assert.ok(pongs >= BURST && pongs < 400, `the burst was served, then the flood cut (${pongs} pongs)`);
    await flooder.end();

    // The watcher, a polite client of another agent, keeps receiving and keeps its own budget.
    for (let n = 11; n <= 20; n++) updates.push(ingest(server, watched, task(n)));
    await Promise.all(updates);
    for (let n = 0; n < 5; n++) {
      watcher.send({ type: 'ping' });
      await watcher.next('pong');
      // Paced as a polite client: the point is a rate under the budget.
      await sleep(200);
    }
    const updatesSeen = () => receivedTaskIds(watcher.frames.filter((frame) => frame.type !== 'pong'));
    await waitFor(() => updatesSeen().length >= 20, 5000, 'updates at the watcher');
    assert.deepEqual(updatesSeen().sort(), Array.from({ length: 20 }, (_, k) => `task-${k + 1}`).sort());
    assert.equal(watcher.socket.readyState, watcher.socket.OPEN);
    assert.deepEqual(watcher.problems, []);

    // The bursty client is still open and within budget again.
    bursty.sendText('{"type":"ping"}');
    assert.equal((await bursty.nextJson()).type, 'pong');
    bursty.sendClose(1000);
    await bursty.closeFrame;
    await bursty.end();

    await waitFor(
      async () => (await stats(server)).active_connections === base.active_connections,
      10_000,
      'flooder and bursty gone',
    );
    const end = await stats(server);
    const counted = end.errors_by_kind as Record<string, number | undefined>;
    assert.equal(
      counted.rate_limited,
      ((base.errors_by_kind as Record<string, number | undefined>).rate_limited ?? 0) + 1,
      'rate_limited counted once',
    );
    assert.equal(end.errors - base.errors, 1, 'no other error counted');
  });
});
