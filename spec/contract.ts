/**
 * Reads asyncapi.yaml and turns it into validators: the contract the tests hold every frame to.
 * Deliberately independent of the valibot schemas that generated the file: the tests check the
 * server against the document client teams use, not against the code that produced both.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';

/** Path of the committed spec. */
export const SPEC_PATH = new URL('../asyncapi.yaml', import.meta.url);

/**
 * Environment variable naming the directory where test processes record the message types
 * they saw (set by scripts/run-tests.ts; unset when a test file runs on its own).
 */
export const OBSERVED_DIR_ENV = 'AGENT_WS_OBSERVED_DIR';

/** Who sends a frame. */
export type Sender = 'server' | 'client';

/** A message of the spec, with where it came from. */
export interface SpecMessage {
  /** The `type` field on the wire. */
  type: string;
  /** Key in `components.messages`. */
  id: string;
  /** Payload schema id: `components.schemas` key. */
  schema: string;
  /** The message's examples' payloads. */
  examples: unknown[];
}

/** The parts of asyncapi.yaml the contract needs. */
export interface Contract {
  /** The whole document, as parsed from YAML. */
  document: Record<string, any>;
  /** Messages each side sends, by wire type: `send` operations are the server's, `receive` the client's. */
  messages: Record<Sender, Map<string, SpecMessage>>;
  /**
   * Validates a frame `sender` sent: its `type` must be one the spec lists for that sender, and
   * the frame must match that message's payload schema.
   *
   * @returns The problems, empty when the frame conforms.
   */
  check(sender: Sender, frame: unknown): string[];
  /** Validates `value` against a `components.schemas` entry. */
  checkSchema(schema: string, value: unknown): string[];
}

// ajv-formats is CommonJS with `exports.default`: under ESM the default import is the whole
// `module.exports`, and the plugin function sits on its `default`.
const addFormats = addFormatsModule.default;

/** The id ajv knows the spec under. */
const SPEC_ID = 'asyncapi.yaml';

/**
 * Loads a contract from AsyncAPI YAML text.
 *
 * @param text The YAML (default: the committed asyncapi.yaml).
 */
export function loadContract(text: string = readFileSync(SPEC_PATH, 'utf8')): Contract {
  const document = parse(text) as Record<string, any>;
  const ajv = new Ajv({ strict: true, allErrors: true });
  addFormats(ajv);
  // The payload schemas refer to each other as `#/components/schemas/…`, pointers into the
  // whole document. Registering just `components` under the document's id keeps those pointers
  // valid without feeding ajv the AsyncAPI keywords around them, which strict mode would reject;
  // `components` itself is declared as an annotation so strict mode accepts it.
  ajv.addKeyword({ keyword: 'components', schemaType: 'object' });
  ajv.addSchema({ $id: SPEC_ID, components: { schemas: document.components?.schemas ?? {} } });

  const validators = new Map<string, ValidateFunction>();
  const validator = (schema: string): ValidateFunction => {
    let validate = validators.get(schema);
    if (!validate) {
      if (!document.components?.schemas?.[schema]) throw new Error(`asyncapi.yaml has no schema ${schema}`);
      validate = ajv.getSchema(`${SPEC_ID}#/components/schemas/${schema}`);
      if (!validate) throw new Error(`ajv could not compile schema ${schema}`);
      validators.set(schema, validate);
    }
    return validate;
  };
  const checkSchema = (schema: string, value: unknown): string[] => {
    const validate = validator(schema);
    return validate(value) ? [] : formatErrors(validate.errors ?? []);
  };

  const resolve = (ref: string): any =>
    ref
      .replace(/^#\//, '')
      .split('/')
      .reduce((node, key) => node?.[key.replace(/~1/g, '/').replace(/~0/g, '~')], document as any);
  const messages: Record<Sender, Map<string, SpecMessage>> = { server: new Map(), client: new Map() };
  for (const operation of Object.values<any>(document.operations ?? {})) {
    const sender: Sender = operation.action === 'send' ? 'server' : 'client';
    for (const { $ref } of operation.messages ?? []) {
      let message = resolve($ref);
      const id = String(message?.$ref ?? $ref)
        .split('/')
        .pop() as string;
      if (message?.$ref) message = resolve(message.$ref);
      const payloadRef: string | undefined = message?.payload?.$ref;
      if (!payloadRef?.startsWith('#/components/schemas/')) throw new Error(`message ${id} has no payload schema ref`);
      const schema = payloadRef.slice('#/components/schemas/'.length);
      const type = resolve(payloadRef)?.properties?.type?.const;
      if (typeof type !== 'string') throw new Error(`payload schema ${schema} has no const \`type\``);
      messages[sender].set(type, {
        type,
        id,
        schema,
        examples: (message.examples ?? []).map((example: { payload?: unknown }) => example.payload),
      });
    }
  }

  return {
    document,
    messages,
    checkSchema,
    check(sender, frame) {
      const type = (frame as { type?: unknown } | null)?.type;
      const message = typeof type === 'string' ? messages[sender].get(type) : undefined;
      if (!message) return [`asyncapi.yaml lists no message of type ${JSON.stringify(type)} sent by the ${sender}`];
      return checkSchema(message.schema, frame);
    },
  };
}

/** One line per ajv error: where, what. */
function formatErrors(errors: ErrorObject[]): string[] {
  return errors.map((error) => `${error.instancePath || '/'} ${error.message ?? error.keyword}`);
}

/**
 * The message types `contract` lists that `seen` lacks, one line each, naming the type and its
 * sender.
 *
 * @param contract The spec's messages by sender.
 * @param seen Types observed on the wire, by sender.
 */
export function unobservedMessageTypes(
  contract: Pick<Contract, 'messages'>,
  seen: Record<Sender, ReadonlySet<string>>,
): string[] {
  return (['server', 'client'] as const).flatMap((sender) =>
    [...contract.messages[sender].keys()]
      .filter((type) => !seen[sender].has(type))
      .map((type) => `message type ${type} (sent by the ${sender}) is in asyncapi.yaml but no test saw it on the wire`),
  );
}
