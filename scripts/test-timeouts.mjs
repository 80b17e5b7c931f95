/**
 * A node:test reporter that names the tests a timeout cut. On Node 20, `--test-timeout` bounds
 * each test file as a whole (its child process), and a file that runs out of time is reported
 * under the file's name alone: the test that hung, still running in the killed child, is in no
 * other reporter's output. This one follows which tests each file started (`test:dequeue`) and
 * finished, and for a file that timed out names the ones still running, with their suites:
 *
 *     # timed out: test/x.test.ts, while running: conformance on bun › ingests single updates …
 *
 * scripts/run-tests.ts uses it as its TAP reporter and repeats these lines in its summary. JavaScript, not TypeScript: Node loads reporters before `--import tsx` takes effect.
 *
 * @module
 */
// @ts-check
import { tap } from 'node:test/reporters';

/**
 * The part of a test event this reporter reads.
 * @typedef {{ type: string, data: { name: string, nesting: number, file?: string, details?: { error?: { failureType?: string } } } }} TestEvent
 */

/**
 * A test started in a file, and whether it finished.
 * @typedef {{ name: string, nesting: number, finished: boolean }} Started
 */

/**
 * The reporter: Node's TAP, followed by a `# timed out: …` comment per file that timed out,
 * naming the tests it was running. (A reporter of its own beside TAP would make three, and
 * Node 20 warns of a listener leak with three.)
 *
 * @param {AsyncIterable<TestEvent>} source The test run's events.
 * @returns {AsyncGenerator<string>} The lines.
 */
export default async function* tapWithTimeouts(source) {
  /** @type {Map<string, Started[]>} */
  const started = new Map();
  /** @type {string[]} */
  const timedOut = [];
  async function* watched() {
    for await (const event of source) {
      const { type, data } = event;
      const file = data.file;
      if (file === undefined || data.name === file) {
        if (type === 'test:fail' && data.details?.error?.failureType === 'testTimeoutFailure' && file !== undefined)
          timedOut.push(
            `# timed out: ${file}, while running: ${running(started.get(file) ?? []) || '(no test had started)'}\n`,
          );
      } else {
        const tests = started.get(file) ?? [];
        started.set(file, tests);
        if (type === 'test:dequeue') tests.push({ name: data.name, nesting: data.nesting, finished: false });
        else if (type === 'test:pass' || type === 'test:fail') {
          const test = tests.findLast(
            (entry) => !entry.finished && entry.name === data.name && entry.nesting === data.nesting,
          );
          if (test) test.finished = true;
        }
      }
      yield event;
    }
  }
  yield* tap(watched());
  yield* timedOut;
}

/**
 * The unfinished tests, each with its unfinished suites before it: `suite › test; …`.
 * @param {Started[]} tests
 * @returns {string}
 */
function running(tests) {
  /** @type {string[]} */
  const paths = [];
  /** @type {Started[]} */
  const stack = [];
  for (const test of tests) {
    if (test.finished) continue;
    while (stack.length > 0 && /** @type {Started} */ (stack.at(-1)).nesting >= test.nesting) stack.pop();
    stack.push(test);
    paths.push(stack.map((entry) => entry.name).join(' › '));
  }
  // A suite's path is the start of its tests' paths: keep only the deepest.
  return paths.filter((path, index) => !paths[index + 1]?.startsWith(`${path} › `)).join('; ');
}
