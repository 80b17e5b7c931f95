/**
 * The contract every frame in the tests is held to. All test clients validate through here,
 * and every message type seen is recorded so a run can tell which types it never exercised.
 */
import * as v from 'valibot';
import { ClientMessageSchema, type ServerMessage, ServerMessageSchema } from '../../plugin/index.ts';

/** Message types seen on the wire in this process, by direction. */
export const observed = { server: new Set<string>(), client: new Set<string>() };

/**
 * Validates a frame the server sent; throws with the issues when it breaks the contract.
 */
export function validateServerFrame(frame: unknown): ServerMessage {
  const result = v.safeParse(ServerMessageSchema, frame);
  if (!result.success) {
    throw new Error(`server frame breaks the contract: ${v.summarize(result.issues)}\n${JSON.stringify(frame)}`);
  }
  observed.server.add(result.output.type);
  return result.output;
}

/**
 * Validates a frame a test client is about to send as a well-behaved client; throws when it
 * breaks the contract (tests that send bad frames on purpose use `sendRaw`).
 */
export function validateClientFrame(frame: unknown): void {
  const result = v.safeParse(ClientMessageSchema, frame);
  if (!result.success) {
    throw new Error(`client frame breaks the contract: ${v.summarize(result.issues)}\n${JSON.stringify(frame)}`);
  }
  observed.client.add(result.output.type);
}
