/**
 * The run's report: the Markdown printed and written to bench/results/, the raw JSON beside it,
 * and, after a full run, the chart and the generated results of bench/README.md (between its
 * `bench:start` and `bench:end` markers).
 *
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import type { Options } from './args.ts';
import { connectionCounts, goals as goalDefs, ratios as ratioDefs } from './goals.ts';
import type { Recorder } from './recorder.ts';
import {
  type ChartPanel,
  type Column,
  chartSvg,
  figure,
  fmt,
  fmtSummary,
  type GoalResult,
  judge,
  paired,
  type RatioDef,
  type Repeats,
  table,
} from './report.ts';
import { HISTORY_SIZES } from './scenarios/history.ts';
import { isScaleServer } from './scenarios/scale.ts';
import type { ServerDef } from './servers.ts';

/** Everything a run produced. */
export interface Run {
  options: Options;
  servers: readonly ServerDef[];
  /** Whether `taskset` was there to pin the processes. */
  pinned: boolean;
  repeats: Repeats;
  recorder: Recorder;
}

export interface Report {
  /** The day, YYYY-MM-DD, that names the files. */
  date: string;
  ratios: RatioDef[];
  goals: GoalResult[];
  /** The full report: printed, and written to bench/results/<date>.md. */
  markdown: string;
  /** The generated results of bench/README.md. */
  readme: string;
  svg: string;
}

/**
 * The history memory table (bench/history.ts, in the plugin on Node's samples); '' when it did
 * not run.
 */
function historyTable(repeats: Repeats): string {
  const rows = HISTORY_SIZES.filter((size) => figure(repeats, 'plugin-node', `history@${size}.bytesPerAgent`)).map(
    (size) => {
      const cell = (key: string, unit: string) =>
        fmtSummary(figure(repeats, 'plugin-node', `history@${size}.${key}`), unit);
      return `| ${size} | ${cell('bytesPerAgent', 'B')} | ${cell('bytesPerUpdate', 'B')} | ${cell('jsonPerUpdate', 'B')} | ${cell('overhead', '')} | ${cell('publishUs', 'µs')} / ${cell('publishUsWithout', 'µs')} |`;
    },
  );
  if (rows.length === 0) return '';
  return [
    '| historySize (full) | heap per agent | heap per update | JSON per update | heap ÷ JSON | publish CPU in process, with / without history |',
    '|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}

/**
 * The scale scenario's table: every figure beside its ratio to raw `ws` measured in the same run;
 * '' when it did not run.
 */
function scaleTable(repeats: Repeats, servers: readonly ServerDef[]): string {
  const ran = servers.filter((s) => isScaleServer(s.name) && figure(repeats, s.name, 'scale.conns'));
  if (ran.length === 0) return '';
  const cell = (server: string, key: string, unit: string) => {
    const value = figure(repeats, server, key);
    const base = figure(repeats, 'ws', key);
    if (!value) return '–';
    const ratio = server !== 'ws' && base ? ` (${fmt(value.median / base.median)} ×)` : '';
    return `${fmtSummary(value, unit)}${ratio}`;
  };
  const rows = ran.map(
    (s) =>
      `| ${s.label} | ${fmt(figure(repeats, s.name, 'scale.conns')?.median ?? Number.NaN)} of ${fmt(figure(repeats, s.name, 'scale.target')?.median ?? Number.NaN)} | ${cell(s.name, 'scale.bytesPerConn', 'B')} | ${cell(s.name, 'scale.sweepMs', 'ms')} | ${cell(s.name, 'scale.sweepUsPerConn', 'µs')} | ${cell(s.name, 'scale.connectPerSec', '/s')} | ${cell(s.name, 'scale.connectCpuUs', 'µs')} | ${cell(s.name, 'scale.p50', 'ms')} | ${cell(s.name, 'scale.p99', 'ms')} | ${cell(s.name, 'scale.last', 'ms')} |`,
  );
  return [
    '| server | connections | RSS per connection (÷ ws) | heartbeat sweep | per connection | connects/s | server CPU per connect | broadcast p50 | p99 | last client |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}

export function buildReport(run: Run): Report {
  const { options, servers, pinned, repeats, recorder } = run;
  const P = options.params;
  const { windows } = recorder;
  const C = options.maxConns;
  const Cs = connectionCounts(P);
  const ratios = ratioDefs(P);
  const goals = judge(repeats, ratios, goalDefs(P));
  const date = new Date().toISOString().slice(0, 10);
  const complete = repeats.length;
  const kept = windows.filter((w) => !w.discarded);
  const header = [
    `Run ${new Date().toISOString()}, ${options.quick ? 'quick' : 'full'}, ${complete} repeat(s); Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GB;`,
    `servers ${pinned ? 'pinned to core 0, load generator to core 1' : 'not pinned'}; ${windows.length - kept.length} of ${windows.length} windows discarded for other processes' CPU > ${P.maxOther} cores.`,
    'Figures: median [min–max] over repeats; ratios paired within each repeat. Every window checked delivered/published = 1 exactly.',
    ...(options.prefill > 0
      ? [`Fan-out servers started with ${options.prefill} updates published to each agent (\`--prefill\`).`]
      : []),
  ].join('\n');
  const history = historyTable(repeats);
  const historyTitle =
    "History memory (Node, in process: every agent's history full of ~200-byte task updates, heap after GC with history − without)";

  const sections: string[] = [];
  const push = (title: string, body: string) => {
    if (body) sections.push(`#### ${title}\n\n${body}`);
  };
  for (const c of Cs) {
    push(
      `Fan-out, C = ${c} connections over ${c / 10} agents`,
      table(repeats, servers, [
        { title: `CPU µs/msg @ ${P.fixedRate / 1000}k msg/s`, key: `fixed@${c}.cpuUs`, unit: 'µs' },
        { title: 'p50 latency', key: `fixed@${c}.p50`, unit: 'ms' },
        { title: 'p99 latency', key: `fixed@${c}.p99`, unit: 'ms' },
        { title: 'flat out msgs/s', key: `flat@${c}.delivered`, unit: '/s' },
        { title: 'flat CPU µs/msg', key: `flat@${c}.cpuUs`, unit: 'µs' },
      ] satisfies Column[]),
    );
  }
  push(
    `Batching, C = ${C}: dense ${P.denseRate} updates/s per agent; sparse 4 updates/s per agent`,
    table(
      repeats,
      servers.filter((s) => s.name.startsWith('plugin-node')),
      [
        { title: 'dense logical updates/s', key: 'dense.delivered', unit: '/s' },
        { title: 'dense CPU µs/update', key: 'dense.cpuUs', unit: 'µs' },
        { title: 'sparse p50', key: 'sparse.p50', unit: 'ms' },
        { title: 'sparse p99', key: 'sparse.p99', unit: 'ms' },
      ],
    ),
  );
  push(
    `Idle connections, C = ${P.memHigh}`,
    table(repeats, servers, [
      { title: 'RSS per connection after GC', key: 'idle.bytesPerConn', unit: 'B' },
      { title: `heartbeat µs/conn/sweep (${P.heartbeatMs} ms)`, key: 'heartbeat.usPerConn', unit: 'µs' },
    ]),
  );
  push(
    'HTTP (autocannon)',
    table(
      repeats,
      servers.filter((s) => s.hub),
      [
        { title: 'GET /agents/ws/stats', key: 'http.stats.rps', unit: '/s' },
        { title: 'GET bare', key: 'http.bareStats.rps', unit: '/s' },
        { title: 'POST /agents/:id/updates', key: 'http.ingest.rps', unit: '/s' },
        { title: 'POST bare', key: 'http.bareIngest.rps', unit: '/s' },
      ],
    ),
  );
  push(historyTitle, history);
  const scale = scaleTable(repeats, servers);
  const scaleTitle = `Scale: idle connections to one server process, all watching one agent, heartbeat every ${P.scale.heartbeatMs} ms; one update broadcast to all (median of ${P.scale.broadcasts})`;
  const notes = recorder.notes.map((note) => `- ${note}`).join('\n');
  push(scaleTitle, scale && notes ? `${scale}\n\n${notes}` : scale);
  const ratioLines = ratios
    .map((def) => ({ def, value: paired(repeats, def) }))
    .filter((row) => row.value)
    .map((row) => `| ${row.def.label} | ${fmtSummary(row.value, row.def.kind === 'diff' ? 'B' : '')} |`);
  if (ratioLines.length)
    sections.push(`#### Paired ratios\n\n| ratio | median [min–max] |\n|---|---:|\n${ratioLines.join('\n')}`);
  const goalLines = goals.map(
    (goal) =>
      `| ${goal.text} | ${fmtSummary(goal.value, goal.unit ?? '')} | ${goal.verdict === 'pass' ? '✅ pass' : goal.verdict === 'miss' ? '❌ miss' : 'n/a'} |`,
  );
  const goalTable = `| goal | measured | |\n|---|---:|---|\n${goalLines.join('\n')}`;

  const chartServers = servers.filter((s) => s.name !== 'plugin-node-batched' && !s.variant);
  const bars = (key: string) =>
    chartServers.map((s) => ({ label: s.label, value: figure(repeats, s.name, key), highlight: s.hub }));
  const panels: ChartPanel[] = [
    { title: `Flat-out msgs/s, C=${C}`, unit: '/s', bars: bars(`flat@${C}.delivered`) },
    { title: `Server CPU µs/msg @ ${P.fixedRate / 1000}k msg/s`, unit: 'µs', bars: bars(`fixed@${C}.cpuUs`) },
    { title: `Idle RSS/conn, C=${P.memHigh}`, unit: 'B', bars: bars('idle.bytesPerConn') },
  ];
  const svg = chartSvg(`hono-agent-ws vs raw ws, Socket.IO, Bun pub/sub (${date})`, panels);

  const markdown = `### Benchmark results (${date})\n\n${header}\n\n${sections.join('\n\n')}\n\n#### Goals\n\n${goalTable}\n`;
  const readme = [
    `![fan-out throughput, CPU per message and idle memory](results/chart.svg)`,
    '',
    `Latest full run: [results/${date}.md](results/${date}.md) (raw figures in \`${date}.json\`).`,
    '',
    header,
    '',
    ...Cs.map((c) =>
      table(
        repeats,
        servers.filter((s) => s.name !== 'plugin-node-batched' && !s.variant),
        [
          { title: `CPU µs/msg @ ${P.fixedRate / 1000}k msg/s, C=${c}`, key: `fixed@${c}.cpuUs`, unit: 'µs' },
          { title: 'p50 / p99 ms', key: `fixed@${c}.p50`, unit: 'ms' },
          { title: `flat msgs/s, C=${c}`, key: `flat@${c}.delivered`, unit: '/s' },
          ...(c === C ? [{ title: 'idle RSS/conn', key: 'idle.bytesPerConn', unit: 'B' }] : []),
        ],
      ).concat('\n'),
    ),
    ...(history ? [`${historyTitle}:`, '', history, ''] : []),
    ...(scale ? [`${scaleTitle}:`, '', scale, '', ...(notes ? [notes, ''] : [])] : []),
    '## Goals',
    '',
    goalTable,
    '',
    '## Running it',
    '',
    '```sh',
    'npm run bench            # full matrix: 5 repeats, C = 1000 and 5000 (about 20 minutes)',
    'npm run bench -- --quick # seconds-long version of every scenario (CI runs it via test/bench-quick.test.ts)',
    'npm run bench -- --servers=plugin-node,ws --repeats=3 --no-write',
    'npm run bench -- --scale-only --scale=50000 # the scale scenario alone (plugin on Node, Bun, Deno and raw ws)',
    '```',
    '',
    'Each server runs in its own process (`bench/servers/`), pinned to one core with `taskset` when present; one',
    'load generator (`bench/load.ts`, `ws` clients) on the other core opens C connections over C/10 agents and',
    'publishes ~200-byte task updates through a side channel that is the same code in every server, so the code',
    'under test is unchanged. Server CPU is read from /proc; windows where other processes used more than',
    `${P.maxOther} cores are run again. Scenarios: fixed rate (${P.fixedRate / 1000}k msg/s), flat-out closed loop, batching`,
    `(dense ${P.denseRate} updates/s per agent vs sparse), idle memory and heartbeat sweep, HTTP with autocannon,`,
    `and, once per run, scale: ${P.scale.target} idle connections asked of one server process (its \`ulimit -n\` raised`,
    'where the machine allows), all watching one agent, from client workers (`bench/scale-clients.ts`) spread over',
    'the source addresses 127.0.0.2–127.0.0.9; it reports RSS per connection, the heartbeat sweep, the connect rate',
    'and the latency of one update broadcast to every connection, and says what stopped it short of the target.',
    'The plugin on Node also runs the fixed-rate and flat-out scenarios with `historySize: 0` and `snapshot: false`',
    '(`plugin-node-nohistory`, the behaviour before resume), for the cost of history (`--prefill=1000` starts the',
    "fan-out servers with every history full); `bench/history.ts` measures the history's heap in a process of its own.",
    '',
  ].join('\n');
  return { date, ratios, goals, markdown, readme, svg };
}

/**
 * Writes bench/results/<date>.json and .md (`<date>-quick.*` for a quick run); after a full run
 * also bench/results/chart.svg and the generated results of bench/README.md.
 */
export function writeResults(run: Run, report: Report): void {
  const { options, servers, pinned, repeats, recorder } = run;
  const { quick } = options;
  const { date } = report;
  mkdirSync('bench/results', { recursive: true });
  const json = {
    date: new Date().toISOString(),
    quick,
    parameters: options.params,
    node: process.version,
    cpus: cpus().map((cpu) => cpu.model),
    pinned,
    prefill: options.prefill,
    servers: servers.map(({ name, label, runtime, batchMs, history }) => ({
      name,
      label,
      runtime,
      batchMs: batchMs ?? 0,
      history: history ?? true,
    })),
    repeats,
    ratios: report.ratios.map((def) => ({ ...def, value: paired(repeats, def) })).filter((row) => row.value),
    goals: report.goals.map(({ text, op, limit, value, verdict }) => ({ text, op, limit, value, verdict })),
    windows: recorder.windows,
    checks: recorder.checks,
  };
  const base = quick ? `bench/results/${date}-quick` : `bench/results/${date}`;
  writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(`${base}.md`, report.markdown);
  if (!quick) {
    writeFileSync('bench/results/chart.svg', report.svg);
    updateReadme(report.readme);
  }
  console.error(
    `bench: wrote ${base}.json, ${base}.md${quick ? '' : ', bench/results/chart.svg and the results in bench/README.md'}`,
  );
}

/** The page whose generated results a full run replaces. */
export const BENCH_README = 'bench/README.md';

/** Replaces the generated results of bench/README.md, between its `bench:start` and `bench:end` markers. */
export function updateReadme(section: string): void {
  const [start, end] = ['<!-- bench:start -->', '<!-- bench:end -->'];
  const text = readFileSync(BENCH_README, 'utf8');
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${BENCH_README} has no ${start} … ${end} section to update`);
  writeFileSync(BENCH_README, `${text.slice(0, from + start.length)}\n${section}\n${text.slice(to)}`);
}
