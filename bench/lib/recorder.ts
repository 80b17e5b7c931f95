/**
 * What every scenario leaves behind besides its figures: the exact delivery checks, the log of
 * measured windows (with the CPU other processes used meanwhile) and the failures.
 *
 * @module
 */
import type { CpuWindow } from './proc.ts';

/** Every scenario's exact delivery check, for the report and for the CI test. */
export interface Check {
  repeat: number;
  server: string;
  scenario: string;
  expected: number;
  received: number;
}

export interface WindowLog {
  repeat: number;
  server: string;
  scenario: string;
  attempt: number;
  other: number;
  server_cores: number;
  loadgen_cores: number;
  discarded: boolean;
}

export interface Recorder {
  readonly checks: Check[];
  readonly windows: WindowLog[];
  readonly failures: string[];
  /** What the report should say about how a scenario ran (e.g. why fewer connections opened). */
  readonly notes: string[];
  note(text: string): void;
  /** Records a delivery check; throws (and records a failure) unless exactly `expected` arrived. */
  check(repeat: number, server: string, scenario: string, expected: number, received: number): void;
  /** Records a failure and throws it. */
  fail(message: string): never;
  /**
   * Runs one measured window, again when other processes used more than `maxOther` cores of
   * CPU during it (at most `attempts` times; the quietest attempt is kept).
   */
  measured<T extends { cpu: CpuWindow }>(
    repeat: number,
    server: string,
    scenario: string,
    attempt: () => Promise<T>,
  ): Promise<T>;
}

export const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;

export function createRecorder(limits: { maxOther: number; attempts: number }): Recorder {
  const checks: Check[] = [];
  const windows: WindowLog[] = [];
  const failures: string[] = [];
  const notes: string[] = [];
  const fail = (message: string): never => {
    failures.push(message);
    throw new Error(message);
  };
  return {
    checks,
    windows,
    failures,
    notes,
    note(text) {
      notes.push(text);
      console.error(`  note: ${text}`);
    },
    fail,
    check(repeat, server, scenario, expected, received) {
      checks.push({ repeat, server, scenario, expected, received });
      if (expected === 0 || received !== expected) {
        fail(
          `${server} ${scenario}: delivered/published = ${received}/${expected} = ${(received / expected).toFixed(6)}, expected exactly 1`,
        );
      }
    },
    async measured<T extends { cpu: CpuWindow }>(
      repeat: number,
      server: string,
      scenario: string,
      attempt: () => Promise<T>,
    ): Promise<T> {
      let best: T | undefined;
      for (let n = 1; n <= limits.attempts; n++) {
        const result = await attempt();
        const quiet = result.cpu.other <= limits.maxOther;
        windows.push({
          repeat,
          server,
          scenario,
          attempt: n,
          other: round(result.cpu.other, 3),
          server_cores: round(result.cpu.server, 3),
          loadgen_cores: round(result.cpu.loadgen, 3),
          discarded: !quiet,
        });
        if (!best || result.cpu.other < best.cpu.other) best = result;
        if (quiet) return result;
        console.error(`  ${server} ${scenario}: other processes used ${result.cpu.other.toFixed(2)} cores, again`);
      }
      const last = windows.findLast((w) => w.server === server && w.scenario === scenario && w.repeat === repeat);
      if (last) last.discarded = false;
      return best as T;
    },
  };
}
