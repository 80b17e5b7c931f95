/**
 * CPU and memory readings from /proc (Linux). Elsewhere every reading is 0 and the report says
 * so instead of failing.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`; 100 on Linux). */
export const CLK_TCK = 100;

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/** CPU time of a process in seconds: utime + stime from /proc/<pid>/stat (10 ms ticks). */
export function statCpu(pid: number): number {
  const text = read(`/proc/${pid}/stat`);
  if (!text) return 0;
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * CPU time of a process in seconds at nanosecond resolution: the sum of every live thread's
 * /proc/<pid>/task/<tid>/schedstat run time. Threads that exited inside a window are missed,
 * so `statCpu` is kept alongside as the cross-check.
 */
export function schedCpu(pid: number): number {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let ns = 0;
  for (const tid of tasks) {
    const text = read(`/proc/${pid}/task/${tid}/schedstat`);
    if (text) ns += Number(text.slice(0, text.indexOf(' ')));
  }
  return ns / 1e9;
}

/** Busy CPU seconds of the whole machine, from the first line of /proc/stat. */
export function machineBusy(): number {
  const line = read('/proc/stat')?.split('\n', 1)[0];
  if (!line) return 0;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLK_TCK;
}

/** Resident set size of a process in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(read(`/proc/${pid}/status`) ?? '');
  return match ? Number(match[1]) * 1024 : 0;
}

/** One reading of everything a window needs. */
export interface CpuSnapshot {
  time: number;
  server: number;
  serverStat: number;
  self: number;
  selfStat: number;
  machine: number;
}

export function snapshot(serverPid: number): CpuSnapshot {
  return {
    time: performance.now(),
    server: schedCpu(serverPid),
    serverStat: statCpu(serverPid),
    self: schedCpu(process.pid),
    selfStat: statCpu(process.pid),
    machine: machineBusy(),
  };
}

/** CPU used between two snapshots, in cores (CPU seconds per second) except `serverSeconds`. */
export interface CpuWindow {
  seconds: number;
  serverSeconds: number;
  serverStatSeconds: number;
  server: number;
  loadgen: number;
  /** Everything else on the machine: /proc/stat busy minus the two measured processes. */
  other: number;
}

export function cpuWindow(a: CpuSnapshot, b: CpuSnapshot): CpuWindow {
  const seconds = (b.time - a.time) / 1000;
  const serverStatSeconds = b.serverStat - a.serverStat;
  const selfStat = b.selfStat - a.selfStat;
  return {
    seconds,
    serverSeconds: b.server - a.server,
    serverStatSeconds,
    server: (b.server - a.server) / seconds,
    loadgen: (b.self - a.self) / seconds,
    other: Math.max(0, (b.machine - a.machine - serverStatSeconds - selfStat) / seconds),
  };
}

/** The soft and hard open-files limits of a process (/proc/<pid>/limits), or undefined. */
export function openFilesLimit(pid: number): { soft: number; hard: number } | undefined {
  const match = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(read(`/proc/${pid}/limits`) ?? '');
  if (!match) return undefined;
  const value = (text: string) => (text === 'unlimited' ? Number.POSITIVE_INFINITY : Number(text));
  return { soft: value(match[1] as string), hard: value(match[2] as string) };
}

/** How many file descriptors a process has open (/proc/<pid>/fd), or 0 when unreadable. */
export function openFileCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/**
 * Whether this process may raise its hard limits (`CAP_SYS_RESOURCE`, bit 24 of CapEff in
 * /proc/self/status); undefined off Linux.
 */
export function canRaiseLimits(): boolean | undefined {
  const match = /CapEff:\s+([0-9a-f]+)/.exec(read('/proc/self/status') ?? '');
  if (!match) return undefined;
  return (BigInt(`0x${match[1]}`) & (1n << 24n)) !== 0n;
}

/** The machine-wide monotonic clock (CLOCK_MONOTONIC), in ms: comparable between processes. */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;
