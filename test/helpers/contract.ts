/**
 * The contract every frame in the tests is held to: the payload schemas of asyncapi.yaml,
 * compiled by ajv in strict mode, not the valibot schemas the server itself uses. All test
 * clients validate through here, and every message type seen is recorded so the run can tell
 * which spec'd types no test exercised.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClientMessage, ServerMessage } from '../../plugin/index.ts';
import { loadContract, OBSERVED_DIR_ENV, type Sender } from '../../spec/contract.ts';

/** The committed asyncapi.yaml, read once per test process. */
export const contract = loadContract();

/** Message types seen on the wire in this process, by sender. */
export const observed: Record<Sender, Set<string>> = { server: new Set(), client: new Set() };

const observedDir = process.env[OBSERVED_DIR_ENV];
if (observedDir) {
  // node --test runs each file in its own process: each leaves its own record for the runner.
  process.on('exit', () => {
    mkdirSync(observedDir, { recursive: true });
    writeFileSync(
      join(observedDir, `${process.pid}.json`),
      JSON.stringify({ server: [...observed.server].sort(), client: [...observed.client].sort() }),
    );
  });
}

function validate(sender: Sender, frame: unknown): void {
  const problems = contract.check(sender, frame);
  if (problems.length > 0) {
    throw new Error(
      `${sender} frame breaks asyncapi.yaml:\n  ${problems.join('\n  ')}\nframe: ${JSON.stringify(frame)}`,
    );
  }
  observed[sender].add((frame as { type: string }).type);
}

/**
 * Validates a frame the server sent; throws with the problems when it breaks the contract.
 *
 * @returns The frame, typed (the type is for the tests' convenience; the check is the spec's).
 */
export function validateServerFrame(frame: unknown): ServerMessage {
  validate('server', frame);
  return frame as ServerMessage;
}

/**
 * Validates a frame a test client is about to send as a well-behaved client; throws when it
 * breaks the contract (tests that send bad frames on purpose use `sendRaw`).
 */
export function validateClientFrame(frame: unknown): ClientMessage {
  validate('client', frame);
  return frame as ClientMessage;
}
