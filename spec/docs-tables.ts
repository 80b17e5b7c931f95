/**
 * The tables of the Markdown docs that restate a fact of the code (options and their defaults,
 * stats fields, metrics, close codes, the demo's environment), written from the code between
 * `<!-- generated: NAME -->` and `<!-- end generated: NAME -->` markers. `npm run docs` rewrites
 * them (spec/docs.ts); spec/docs.test.ts fails while a committed page differs from a fresh generation.
 *
 * Option tables read the interface's JSDoc from the source (one member per comment, in the
 * project's style), so a member's comment is its row; the hub's defaults come from its options
 * schema, and a default a comment states must agree with the schema's.
 *
 * @module
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as v from 'valibot';
import { serverTimeouts } from '../adapters/node.ts';
import { DEMO_ENV } from '../examples/demo/app.ts';
import { CLOSE_CODES } from '../plugin/close-codes.ts';
import { ERROR_KIND_DESCRIPTIONS, HTTP_ERROR_CODES, HTTP_ERRORS } from '../plugin/error-kinds.ts';
import { BATCH_SIZE_BUCKETS, createHistogram, hubMetricFamilies, SEND_DELAY_BUCKETS } from '../plugin/metrics.ts';
import { HubOptionsSchema } from '../plugin/options.ts';
import { AgentSummarySchema, ERROR_KINDS, type HubStats, HubStatsSchema } from '../plugin/stats.ts';

const ROOT = new URL('../', import.meta.url);

/** One documented member of an interface: its name, whether it may be left out, its JSDoc text. */
export interface DocumentedMember {
  readonly name: string;
  readonly optional: boolean;
  readonly doc: string;
}

/**
 * The members of `export interface NAME` in a source file, with their JSDoc joined into one line.
 *
 * @throws {Error} When the interface is not there, or a member has no comment.
 */
export function interfaceMembers(file: string, name: string): DocumentedMember[] {
  const source = readFileSync(new URL(file, ROOT), 'utf8');
  const start = new RegExp(`^export interface ${name}\\b[^{]*\\{\\n`, 'm').exec(source);
  if (!start) throw new Error(`${file} has no interface ${name}`);
  const body = source.slice(start.index + start[0].length, source.indexOf('\n}', start.index));
  const members: DocumentedMember[] = [];
  let comment: string[] | undefined;
  let open = false;
  // Members and their comments are indented by two spaces; deeper lines belong to a member's type.
  for (const line of body.split('\n')) {
    if (/^ {2}\/\*\*/.test(line)) {
      comment = [];
      open = true;
    }
    if (open && comment) {
      comment.push(
        line
          .replace(/^\s*\/?\*+\/?/, '')
          .replace(/\*\/\s*$/, '')
          .trim(),
      );
      if (line.includes('*/')) open = false;
      continue;
    }
    const member = /^ {2}(?:readonly )?(\w+)(\??):/.exec(line);
    if (!member) continue;
    if (!comment) throw new Error(`${file}: ${name}.${member[1]} has no JSDoc`);
    members.push({ name: member[1] as string, optional: member[2] === '?', doc: comment.filter(Boolean).join(' ') });
    comment = undefined;
  }
  return members;
}

/** A default a JSDoc comment states (`Default 4 MiB.`, `(default 500)`, `Default: …`), and the text without it. */
export function statedDefault(doc: string): { value: string | undefined; rest: string } {
  // `` `process` (default; …) ``: the value named just before.
  const named = /`([^`]+)` \(default[;)]/.exec(doc);
  if (named) return { value: `\`${named[1]}\``, rest: doc };
  const inParens = /\s*\(default:? ([^()]*(?:\([^()]*\)[^()]*)*)\)/i.exec(doc);
  if (inParens) return { value: inParens[1]?.trim(), rest: doc.replace(inParens[0], '').trim() };
  const sentence = /(?:\bDefault|[;,] default):? (.+?)(?:\.(?=\s|$)|;|(?=: ))/.exec(doc);
  if (!sentence) return { value: undefined, rest: doc };
  const value = sentence[1]?.trim();
  // A default that is a sentence of its own is cut from the description; one that goes on
  // (`Default 10000: Node caps…`) stays in it.
  const standalone = sentence[0].endsWith('.');
  if (!standalone) return { value, rest: doc };
  const rest = doc.replace(sentence[0], '').replace(/\s+/g, ' ').trim();
  return { value, rest: rest === '' || /[.!?)]$/.test(rest) ? rest : `${rest}.` };
}

const MiB = 1024 * 1024;

/** A number as the docs show it: bytes in KiB/MiB and long intervals in hours or seconds beside it. */
function formatNumber(option: string, value: number): string {
  if (/Bytes|Amount/.test(option) && value >= 1024 && value % 1024 === 0)
    return value % MiB === 0 ? `${value / MiB} MiB` : `${value / 1024} KiB`;
  if (/Interval|Ttl/.test(option) && value >= 60_000 && value % 60_000 === 0)
    return value % 3_600_000 === 0 ? `${value} (${value / 3_600_000} h)` : `${value} (${value / 60_000} min)`;
  return String(value);
}

/** A default as the docs show it. */
export function formatDefault(option: string, value: unknown): string {
  if (typeof value === 'number') return formatNumber(option, value);
  if (value === undefined) return 'none';
  return `\`${JSON.stringify(value)}\``;
}

/** What a stated default means, when it is a plain value: `4 MiB`, `1 hour`, `true`, `` `[]` ``. */
export function parseStatedDefault(text: string): unknown {
  const plain = text.replace(/`/g, '').trim();
  if (plain === 'true' || plain === 'false') return plain === 'true';
  if (plain === '[]') return [];
  const number = /^(\d+(?:\.\d+)?)\s*(KiB|MiB|hours?|h|s|ms)?\b/.exec(plain);
  if (!number) return undefined;
  const scale = { KiB: 1024, MiB: MiB, hour: 3_600_000, hours: 3_600_000, h: 3_600_000, s: 1000, ms: 1 };
  return Number(number[1]) * (number[2] ? scale[number[2] as keyof typeof scale] : 1);
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** A Markdown table. */
function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.map(cell).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * The defaults of `createAgentHub`'s options, from its schema.
 */
export function hubDefaults(): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(HubOptionsSchema.entries).map(([name, schema]) => [name, v.getDefault(schema as never)]),
  );
}

/**
 * Disagreements between the hub options' JSDoc and the schema: a member the schema does not
 * know, an option the interface does not document, or a stated default that is not the
 * schema's.
 */
export function hubOptionProblems(): string[] {
  const members = interfaceMembers('plugin/options.ts', 'AgentHubOptions');
  const defaults = hubDefaults();
  const problems: string[] = [];
  for (const name of Object.keys(defaults))
    if (!members.some((m) => m.name === name)) problems.push(`${name}: in the schema, not in AgentHubOptions`);
  for (const { name, doc } of members) {
    if (!(name in defaults)) {
      problems.push(`${name}: in AgentHubOptions, not in the schema`);
      continue;
    }
    const stated = statedDefault(doc).value;
    const actual = defaults[name];
    if (actual === undefined) continue;
    if (stated === undefined)
      problems.push(`${name}: its JSDoc states no default (the schema's is ${formatDefault(name, actual)})`);
    else if (JSON.stringify(parseStatedDefault(stated)) !== JSON.stringify(actual))
      problems.push(`${name}: its JSDoc says "Default ${stated}", the schema's is ${JSON.stringify(actual)}`);
  }
  return problems;
}

/** `| option | default | meaning |` from an interface, defaults from `defaults` or else its JSDoc. */
function optionsTable(file: string, name: string, defaults: Record<string, unknown> = {}): string {
  return table(
    ['option', 'default', 'meaning'],
    interfaceMembers(file, name).map(({ name: option, optional, doc }) => {
      const { value, rest } = statedDefault(doc);
      const shown =
        defaults[option] !== undefined
          ? formatDefault(option, defaults[option])
          : !optional
            ? 'required'
            : (value ?? '—');
      return [`\`${option}\``, shown, rest];
    }),
  );
}

/** A field's description in a valibot schema (the last `description` action of its pipe). */
const describe = (schema: unknown): string =>
  v.getDescription(schema as never) ??
  ((schema as { wrapped?: unknown }).wrapped ? describe((schema as { wrapped: unknown }).wrapped) : '');

/** The object schema inside a `v.pipe(v.object(…), …)`, or the schema itself. */
const objectOf = (schema: unknown): { entries: Record<string, unknown> } => {
  const piped = schema as { pipe?: unknown[]; entries?: Record<string, unknown>; wrapped?: unknown };
  if (piped.entries) return piped as { entries: Record<string, unknown> };
  if (piped.wrapped) return objectOf(piped.wrapped);
  return objectOf(piped.pipe?.[0]);
};

/** Every stats field with its description; `cluster`'s fields as `cluster.NAME`. */
function statsTable(): string {
  const rows: string[][] = [];
  for (const [field, schema] of Object.entries(objectOf(HubStatsSchema).entries)) {
    rows.push([`\`${field}\``, describe(schema)]);
    if (field === 'cluster')
      for (const [inner, innerSchema] of Object.entries(objectOf(schema).entries))
        rows.push([`\`cluster.${inner}\``, describe(innerSchema)]);
  }
  return table(['field', 'meaning'], rows);
}

/** Every field of one agent of the listing. */
function agentSummaryTable(): string {
  return table(
    ['field', 'meaning'],
    Object.entries(objectOf(AgentSummarySchema).entries).map(([field, schema]) => [`\`${field}\``, describe(schema)]),
  );
}

/** Every metric family, its type, labels and help; histograms with their buckets. */
function metricsTable(): string {
  const stats: HubStats = {
    ...(Object.fromEntries(
      Object.keys(objectOf(HubStatsSchema).entries).map((field) => [field, 0]),
    ) as unknown as HubStats),
    instance_id: 'a',
    started_at: new Date(0).toISOString(),
    errors_by_kind: Object.fromEntries(ERROR_KINDS.map((kind) => [kind, 0])) as HubStats['errors_by_kind'],
    cluster: { instances: 0, active_connections: 0, agents_connected: 0, queued_messages: 0 },
  };
  const families = hubMetricFamilies({
    stats,
    batchSize: createHistogram(BATCH_SIZE_BUCKETS),
    sendDelay: createHistogram(SEND_DELAY_BUCKETS),
  });
  return table(
    ['metric', 'type', 'meaning'],
    families.map(({ name, type, help, values }) => {
      const labels = [...new Set(values.flatMap((sample) => Object.keys(sample.labels)))].filter((l) => l !== 'le');
      const buckets = values.filter((s) => s.labels.le !== undefined && s.labels.le !== '+Inf').map((s) => s.labels.le);
      const family = `\`${name}${labels.length > 0 ? `{${labels.join(',')}}` : ''}\``;
      const cluster = name.includes('_cluster_') ? ' Only with a broker that spans several instances.' : '';
      return [family, type, `${help}${buckets.length > 0 ? ` Buckets: ${buckets.join(', ')}.` : ''}${cluster}`];
    }),
  );
}

/** Every error kind the stats count, what it counts and how the client is answered. */
function errorKindsTable(): string {
  return table(
    ['kind', 'counts', 'answer'],
    ERROR_KINDS.map((kind) => [
      `\`${kind}\``,
      ERROR_KIND_DESCRIPTIONS[kind].counts,
      ERROR_KIND_DESCRIPTIONS[kind].answer,
    ]),
  );
}

/** Every error code of an HTTP refusal, its status and what it means. */
function httpErrorsTable(): string {
  return table(
    ['code', 'status', 'meaning'],
    HTTP_ERROR_CODES.map((code) => [`\`${code}\``, HTTP_ERRORS[code].status, HTTP_ERRORS[code].means]),
  );
}

/** Every close code, what it means and whether the official client reconnects. */
function closeCodesTable(): string {
  return table(
    ['code', 'reason text', 'meaning', 'client'],
    Object.entries(CLOSE_CODES).map(([code, info]) => [
      code,
      info.reason,
      info.description,
      info.reconnect ? 'reconnects' : 'stops',
    ]),
  );
}

/** A hub option's default as the docs show it: the schema's, else the one its JSDoc states. */
function hubDefaultText(option: string): string {
  const defaults = hubDefaults();
  if (!(option in defaults)) return 'not in this build';
  if (defaults[option] !== undefined) return formatDefault(option, defaults[option]);
  const member = interfaceMembers('plugin/options.ts', 'AgentHubOptions').find((m) => m.name === option);
  return (member && statedDefault(member.doc).value) ?? 'none';
}

/** The first clause of a description: up to its first `;`, `:` or sentence end. */
const firstClause = (text: string) => /^(.+?)(?:[;:]|\.(?=\s|$)|$)/.exec(text)?.[1] ?? text;

/** The demo's environment variables, what each sets, its default and what it does (for docs/demo.md). */
function demoEnvTable(): string {
  const hubDocs = new Map(interfaceMembers('plugin/options.ts', 'AgentHubOptions').map((m) => [m.name, m.doc]));
  const redisDocs = new Map(
    interfaceMembers('brokers/redis/index.ts', 'RedisBrokerOptions').map((m) => [m.name, m.doc]),
  );
  return table(
    ['variable', 'sets', 'default', 'meaning'],
    DEMO_ENV.map((variable) => {
      const option = variable.option as string;
      const [sets, fallback, doc] =
        variable.target === 'hub'
          ? [`[\`${option}\`](api.md#options)`, hubDefaultText(option), hubDocs.get(option)]
          : variable.target === 'timeouts'
            ? [
                `[\`serveNode\`](runtimes.md#node)'s \`${option}\``,
                formatDefault(option, serverTimeouts[option as keyof typeof serverTimeouts]),
                undefined,
              ]
            : variable.target === 'redis'
              ? [
                  `[\`redisBroker\`](redis.md)'s \`${option}\``,
                  option === 'url'
                    ? 'unset (in-memory broker)'
                    : (statedDefault(redisDocs.get(option) ?? '').value ?? 'none'),
                  redisDocs.get(option),
                ]
              : ['the demo', variable.fallback === undefined ? 'unset' : String(variable.fallback), undefined];
      const meaning = variable.about || (doc ? firstClause(statedDefault(doc).rest) : '');
      return [`\`${variable.name}\``, sets, fallback, meaning];
    }),
  );
}

/** Each generated table by its marker name. */
export const GENERATED_TABLES: Readonly<Record<string, () => string>> = {
  'hub-options': () => optionsTable('plugin/options.ts', 'AgentHubOptions', hubDefaults()),
  'memory-broker-options': () => optionsTable('plugin/broker.ts', 'MemoryBrokerOptions'),
  'serve-node-options': () => optionsTable('adapters/node.ts', 'ServeNodeOptions', { ...serverTimeouts }),
  'client-options': () => optionsTable('client/index.ts', 'ConnectOptions'),
  'reconnect-options': () => optionsTable('client/policy.ts', 'ReconnectOptions'),
  'dashboard-options': () => optionsTable('dashboard/index.ts', 'DashboardOptions'),
  'redis-options': () => optionsTable('brokers/redis/index.ts', 'RedisBrokerOptions'),
  'sqlite-options': () => optionsTable('brokers/sqlite/index.ts', 'SqliteBrokerOptions'),
  stats: statsTable,
  'agent-summary': agentSummaryTable,
  metrics: metricsTable,
  'close-codes': closeCodesTable,
  'error-kinds': errorKindsTable,
  'http-errors': httpErrorsTable,
  'demo-env': demoEnvTable,
};

/** The Markdown files that may hold generated tables: README.md, docs/*.md and bench/README.md. */
export function markdownFiles(): string[] {
  const docs = readdirSync(new URL('docs/', ROOT), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => `docs/${file}`)
    .sort();
  return ['README.md', ...docs, 'bench/README.md'];
}

const MARKED = /(<!-- generated: ([\w-]+) -->)\n(?:[\s\S]*?\n)?(<!-- end generated: \2 -->)/g;

/**
 * A Markdown text with every generated table rewritten from the code.
 *
 * @throws {Error} When a marker names no known table.
 */
export function renderTables(text: string, file = 'the text'): string {
  return text.replace(MARKED, (_, open: string, name: string, close: string) => {
    const render = GENERATED_TABLES[name];
    if (!render) throw new Error(`${file}: no generated table is called ${name}`);
    return `${open}\n${render()}\n${close}`;
  });
}

/** The names of the generated tables a Markdown text holds. */
export function tableNames(text: string): string[] {
  return [...text.matchAll(MARKED)].map((match) => match[2] as string);
}

/** Reads a Markdown file of the project ('' when it does not exist). */
export function readMarkdown(file: string): string {
  try {
    return readFileSync(new URL(file, ROOT), 'utf8');
  } catch {
    return '';
  }
}

/**
 * Rewrites the generated tables of every Markdown file.
 *
 * @returns The files that changed.
 */
export function writeTables(): string[] {
  const changed: string[] = [];
  for (const file of markdownFiles()) {
    const text = readMarkdown(file);
    const fresh = renderTables(text, file);
    if (fresh !== text) {
      writeFileSync(new URL(file, ROOT), fresh);
      changed.push(file);
    }
  }
  return changed;
}
