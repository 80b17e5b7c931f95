/**
 * Fake time for tests of an in-process hub, so a batch window or a TTL passes at once instead
 * of in real time.
 */
import type { TestContext } from 'node:test';

/** Fake time: see `fakeClock`. */
export interface FakeClock {
  /**
   * Moves time on by `ms`, one millisecond at a time, running each timer that falls due and then
   * everything its callbacks started (promise continuations, `setImmediate`) before the next.
   */
  advance(ms: number): Promise<void>;
}

/** Resolves once pending microtasks and immediates ran (`setImmediate` is left real). */
const settle = (): Promise<void> => new Promise((done) => setImmediate(done));

/**
 * Replaces `setTimeout`, `setInterval` and `Date` with node:test's mock timers, starting at the
 * real time, and `performance.now` (which the mock timers do not cover, and the hub's windows,
 * handover and inbound budget read) with one that follows the mocked `Date`. Everything is
 * restored when the test `t` ends. Only for code in this process: a server in a child process
 * keeps real time.
 *
 * @param t The running test's context.
 */
export function fakeClock(t: TestContext): FakeClock {
  const start = Date.now();
  const base = performance.now();
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: start });
  t.mock.method(performance, 'now', () => base + (Date.now() - start));
  return {
    async advance(ms) {
      await settle();
      for (let step = 0; step < ms; step++) {
        t.mock.timers.tick(1);
        await settle();
      }
    },
  };
}
