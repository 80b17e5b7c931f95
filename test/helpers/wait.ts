/**
 * The suite's two ways to wait. `waitFor` waits for something to happen (a frame, a counter, a
 * log line) and is what a test should use; `sleep` is only for a window in which something must
 * NOT happen, or for pacing a workload, and every call says why in a comment.
 */

/**
 * Resolves after `ms` milliseconds of real time.
 *
 * @param ms How long to wait.
 */
export const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/**
 * Polls `check` until it returns true, and rejects with `<what> not reached within <timeout> ms`
 * when it never does. A `check` that throws rejects at once with its error.
 *
 * @param check The condition; may be async (reading the stats over HTTP, say).
 * @param timeout Milliseconds before giving up: generous, as the machine may be loaded.
 * @param what What is awaited, for the failure message.
 * @param interval Milliseconds between polls.
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeout = 3000,
  what = 'condition',
  interval = 10,
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeout} ms`);
    await sleep(interval);
  }
}
