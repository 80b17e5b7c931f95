import * as v from 'valibot';
import { AGENT_ID } from './binding.ts';
import type { Broker } from './broker.ts';
import type { HubCore } from './core.ts';
import { nestsDeeperThan, type UpdateEncoder } from './encode.ts';
import { InvalidUpdateError } from './errors.ts';
import {
  AgentIdSchema,
  type IngestItem,
  type StatusUpdateFieldsSchema,
  type TaskUpdateFieldsSchema,
  type UnsequencedUpdate,
} from './schemas.ts';

/** A promise that needs no allocation per publish. */
const DONE: Promise<void> = Promise.resolve();

/**
 * The way in: an update from `publishStatus`, `publishTask` or the ingest route is checked,
 * completed (`type`, `agent_id`, `timestamp`), serialised once and handed to the broker, which
 * numbers it and delivers it to the instances watching its agent (plugin/delivery.ts).
 *
 * @internal
 */
export interface Publishing {
  /** Hands a complete update to the broker; settles once the broker took it. */
  publish(update: UnsequencedUpdate): Promise<void>;
  /** `publish` of each, in order. */
  publishAll(updates: readonly UnsequencedUpdate[]): Promise<unknown>;
  /**
   * Builds a complete update from validated ingest fields, refusing what the hub could not
   * send: too deep, or not serialisable.
   *
   * @throws {InvalidUpdateError}
   */
  prepareUpdate(agentId: string, item: IngestItem): UnsequencedUpdate;
  /** Checks and publishes the fields a `publish*` method was given; never throws synchronously. */
  publishFields(
    agentId: string,
    type: IngestItem['type'],
    schema: typeof StatusUpdateFieldsSchema | typeof TaskUpdateFieldsSchema,
    update: unknown,
  ): Promise<void>;
}

/**
 * Creates the publishing of one hub.
 *
 * @internal
 */
export function createPublishing(core: HubCore): Publishing {
  const { broker, counters, encoder, brokerFailed } = core;
  const { maxUpdateDepth } = core.config;

  const publish = (update: UnsequencedUpdate): Promise<void> => {
    if (core.closing) return Promise.reject(new Error('hono-agent-ws: the hub is closed'));
    counters.updates_published++;
    let receipt: ReturnType<Broker['publish']>;
    try {
      receipt = broker.publish(update.agent_id, update);
    } catch (error) {
      brokerFailed('publish', update.agent_id, error);
      return Promise.reject(error);
    }
    if (!(receipt instanceof Promise)) {
      if (receipt.queued) counters.messages_queued++;
      return DONE;
    }
    return receipt.then(
      (settled) => {
        if (settled.queued) counters.messages_queued++;
      },
      (error) => {
        brokerFailed('publish', update.agent_id, error);
        throw error;
      },
    );
  };

  const { buildUpdate, checkFields } = createUpdateBuilder(maxUpdateDepth, encoder);

  const publishFields: Publishing['publishFields'] = (agentId, type, schema, update) => {
    try {
      return publish(checkFields(agentId, type, schema, update));
    } catch (error) {
      return Promise.reject(error);
    }
  };

  return {
    publish,
    publishAll: (updates) =>
      updates.length === 1 ? publish(updates[0] as UnsequencedUpdate) : Promise.all(updates.map(publish)),
    prepareUpdate: (agentId, item) => buildUpdate(agentId, item.type, item),
    publishFields,
  };
}

/**
 * How an update is completed and checked before it is published, shared by the hub and the
 * Cloudflare Worker (brokers/cloudflare/worker.ts), which publishes to Durable Objects instead.
 *
 * @internal
 */
export interface UpdateBuilder {
  /**
   * A complete update of `fields` (with `type`, or without it as the publish methods have them).
   *
   * @throws {InvalidUpdateError} When `result` nests too deep or the update is not serialisable.
   */
  buildUpdate(
    agentId: string,
    type: IngestItem['type'],
    fields: Omit<IngestItem, 'type'> | IngestItem,
  ): UnsequencedUpdate;
  /**
   * Checks the agent id and the fields a `publish*` method was given, then builds the update.
   *
   * @throws {InvalidUpdateError} When any of them is invalid.
   */
  checkFields(
    agentId: string,
    type: IngestItem['type'],
    schema: typeof StatusUpdateFieldsSchema | typeof TaskUpdateFieldsSchema,
    update: unknown,
  ): UnsequencedUpdate;
}

/**
 * Creates the update builder of one hub.
 *
 * @param maxUpdateDepth The deepest nesting of `result` accepted.
 * @param encoder Serialises each update once (the check that it can be).
 *
 * @returns The builder.
 *
 * @internal
 */
export function createUpdateBuilder(maxUpdateDepth: number, encoder: UpdateEncoder): UpdateBuilder {
  /** Nesting of `result` within `maxUpdateDepth`: checked before anything else touches it. */
  const DepthSchema = v.object({
    result: v.optional(
      v.pipe(
        v.unknown(),
        v.check(
          (input: unknown) => !nestsDeeperThan(input, maxUpdateDepth),
          `result nests deeper than ${maxUpdateDepth} levels (maxUpdateDepth)`,
        ),
      ),
    ),
  });

  /** A complete update of `fields` (with `type`, or without it as the publish methods have them), copied once. */
  const buildUpdate = (
    agentId: string,
    type: IngestItem['type'],
    fields: Omit<IngestItem, 'type'> | IngestItem,
  ): UnsequencedUpdate => {
    const what = type === 'status_update' ? 'status update' : 'task update';
    // The schema only to word the refusal: a valibot pipeline per update costs more than the check.
    if ((fields as { result?: unknown }).result !== undefined) {
      const depth = v.safeParse(DepthSchema, fields);
      if (!depth.success) throw new InvalidUpdateError(what, depth.issues);
    }
    // `type` first, so `type` and `agent_id` lead on the wire (a `type` in `fields` keeps that place).
    const update = { type, agent_id: agentId, ...fields, timestamp: new Date().toISOString() } as UnsequencedUpdate;
    try {
      encoder.body(update);
    } catch (error) {
      const failed = v.safeParse(
        v.custom(() => false, `update is not JSON-serialisable: ${String(error)}`),
        update,
      );
      throw new InvalidUpdateError(what, failed.issues as [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]);
    }
    return update;
  };

  const checkFields: UpdateBuilder['checkFields'] = (agentId, type, schema, update) => {
    if (typeof agentId !== 'string' || !AGENT_ID.test(agentId)) {
      const id = v.safeParse(AgentIdSchema, agentId);
      if (!id.success) throw new InvalidUpdateError('agent id', id.issues);
    }
    const result = v.safeParse(schema, update);
    if (!result.success) throw new InvalidUpdateError(type.replace('_', ' '), result.issues);
    return buildUpdate(agentId, type, result.output as Omit<IngestItem, 'type'>);
  };

  return { buildUpdate, checkFields };
}
