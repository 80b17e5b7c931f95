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
