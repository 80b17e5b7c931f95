/**
 * The command line of `npm run bench` and the scenario parameters it selects.
 *
 * @module
 */

/** Sizes and durations of every scenario; written to the results JSON as `parameters`. */
export interface Params {
  repeats: number;
  /** Connection counts C of the fan-out scenarios; the largest also runs batching. */
  conns: number[];
  warmupMs: number;
  windowMs: number;
  /** Publishes per second of the fixed-rate scenario (all agents together). */
  fixedRate: number;
  /** Updates per second per agent of the dense batching scenario. */
  denseRate: number;
  /** Idle memory is the RSS difference between these two connection counts. */
  memLow: number;
  memHigh: number;
  heartbeatMs: number;
  idleMs: number;
  /** autocannon: a fixed number of requests (quick) or a duration after a warm-up (full). */
  http: { amount: number; connections: number } | { durationMs: number; warmupMs: number; connections: number };
  /**
   * Clients of the restart reconnect storm (bench/lib/scenarios/storm.ts; the scale scenario's
   * count unless `--storm=N`); 0 skips it.
   */
  storm: number;
  /** The scale scenario (bench/lib/scenarios/scale.ts); `target` 0 skips it. */
  scale: { target: number; heartbeatMs: number; idleMs: number; broadcasts: number };
  /** A window is run again when other processes used more cores than this during it. */
  maxOther: number;
  /** Most runs of one window. */
  attempts: number;
}

/** What the command line asked for. */
export interface Options {
  /** `--quick`: the seconds-long version of every scenario. */
  quick: boolean;
  /** False with `--no-write`: print the report only. */
  write: boolean;
  params: Params;
  /** Flat-out in-flight bound, in messages per connection (`--inflight=N`, 16). */
  flatInflight: number;
  /** The largest C. */
  maxConns: number;
  /** Extra flags for the Node servers, e.g. `--node-flags=--cpu-prof,--cpu-prof-dir=/tmp/prof`. */
  nodeFlags: string[];
  /** `--servers=a,b`: the servers to run; every one when undefined. */
  servers: string[] | undefined;
  /**
   * `--prefill=N`: updates each agent gets before the fan-out windows (plugin servers), so the
   * windows run with the history already full, as in a server that has run for a while; 0 (the
   * default) starts from empty histories.
   */
  prefill: number;
  /** `--scale-only`: run the scale scenario only. */
  scaleOnly: boolean;
}

const quickParams = (): Params => ({
  repeats: 1,
  conns: [200],
  warmupMs: 150,
  windowMs: 400,
  fixedRate: 4_000,
  denseRate: 100,
  memLow: 40,
  memHigh: 400,
  heartbeatMs: 250,
  idleMs: 600,
  http: { amount: 400, connections: 10 },
  scale: { target: 400, heartbeatMs: 1_000, idleMs: 2_000, broadcasts: 3 },
  storm: 200,
  maxOther: 0.5,
  attempts: 1,
});

const fullParams = (): Params => ({
  repeats: 5,
  conns: [1000, 5000],
  warmupMs: 600,
  windowMs: 2000,
  fixedRate: 20_000,
  denseRate: 200,
  memLow: 500,
  memHigh: 5000,
  heartbeatMs: 1000,
  idleMs: 2000,
  http: { durationMs: 1500, warmupMs: 300, connections: 50 },
  scale: { target: 50_000, heartbeatMs: 5_000, idleMs: 15_000, broadcasts: 10 },
  storm: 50_000,
  maxOther: 0.25,
  attempts: 2,
});

/**
 * Reads `--quick`, `--no-write`, `--repeats=N`, `--conns=1000,5000`, `--window=ms`,
 * `--inflight=N`, `--servers=a,b`, `--node-flags=a,b`, `--prefill=N`, `--scale=N` (connections of the
 * scale scenario, 0 skips it) and `--scale-only`; anything else is ignored.
 */
export function parseArgs(args: readonly string[]): Options {
  const flag = (name: string) => args.includes(`--${name}`);
  const option = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
  const quick = flag('quick');
  const params = quick ? quickParams() : fullParams();
  const repeats = option('repeats');
  if (repeats) params.repeats = Number(repeats);
  const conns = option('conns');
  if (conns) params.conns = conns.split(',').map(Number);
  const window = option('window');
  if (window) params.windowMs = Number(window);
  const scale = option('scale');
  if (scale) params.scale.target = Number(scale);
  params.storm = Number(option('storm') ?? (scale ? params.scale.target : params.storm));
  return {
    quick,
    write: !flag('no-write'),
    params,
    flatInflight: Number(option('inflight') ?? 16),
    maxConns: Math.max(...params.conns),
    nodeFlags: option('node-flags')?.split(',') ?? [],
    servers: option('servers')?.split(','),
    prefill: Number(option('prefill') ?? 0),
    scaleOnly: flag('scale-only'),
  };
}
