/**
 * Runtime validation of server frames with the server's own valibot schemas. Loaded only when
 * `connectAgent(url, { validate: true })` asks for it (a dynamic import), so the client without
 * validation carries no valibot.
 *
 * @module
 */
import * as v from 'valibot';
import { type ServerMessage, ServerMessageSchema } from '../plugin/schemas.ts';

/** The frame when it matches `ServerMessageSchema`, else a message saying what is wrong. */
export const validateServerMessage = (
  frame: unknown,
): { ok: true; frame: ServerMessage } | { ok: false; reason: string } => {
  const result = v.safeParse(ServerMessageSchema, frame);
  return result.success ? { ok: true, frame: result.output } : { ok: false, reason: v.summarize(result.issues) };
};
