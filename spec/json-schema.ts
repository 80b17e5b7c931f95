/**
 * Turns the valibot schemas of plugin/ into JSON Schema definitions for the generated specs.
 * The valibot schemas are the only place shapes are written; everything here is mechanical.
 */
import { type ConversionConfig, type JsonSchema, toJsonSchemaDefs } from '@valibot/to-json-schema';
import type * as v from 'valibot';
import * as schemas from '../plugin/schemas.ts';
import * as stats from '../plugin/stats.ts';

/** Any valibot schema. */
export type AnySchema = v.GenericSchema;

/**
 * Component names that would otherwise clash: `Error` would shadow the global `Error` in models
 * generated from the spec, so it takes the name of its TypeScript type instead.
 */
const RENAMED: Readonly<Record<string, string>> = { Error: 'ErrorMessage' };

/**
 * Every exported `*Schema` of plugin/schemas.ts and plugin/stats.ts, by component name
 * (`ConnectionEstablishedSchema` → `ConnectionEstablished`). Walking the module exports instead
 * of listing them means a schema added to the code lands in the spec on the next `npm run spec`.
 */
export const NAMED_SCHEMAS: ReadonlyMap<string, AnySchema> = new Map(
  Object.entries({ ...schemas, ...stats })
    .filter(([name, value]) => name.endsWith('Schema') && isSchema(value))
    .map(([name, value]) => {
      const base = name.slice(0, -'Schema'.length);
      return [RENAMED[base] ?? base, value as AnySchema] as const;
    })
    .sort(([a], [b]) => a.localeCompare(b)),
);

function isSchema(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'schema';
}

/** The component name of a named schema. */
export function nameOf(schema: AnySchema): string {
  for (const [name, candidate] of NAMED_SCHEMAS) if (candidate === schema) return name;
  throw new Error(`schema ${schema.type} is not a named export of plugin/schemas.ts or plugin/stats.ts`);
}

const config: Omit<ConversionConfig, 'definitions'> = {
  target: 'draft-07',
  // An action or schema with no JSON Schema form must stop the generator, not vanish silently.
  errorMode: 'throw',
  // JSON cannot carry NaN or Infinity, so `finite()` has nothing left to say on the wire.
  ignoreActions: ['finite'],
  overrideAction: ({ valibotAction, jsonSchema }) =>
    // The calendar check of TimestampSchema is what `format: date-time` already means;
    // any other `check` still fails the conversion.
    valibotAction.type === 'check' && jsonSchema.format === 'date-time' ? jsonSchema : undefined,
  overrideRef: ({ referenceId }) => `#/components/schemas/${referenceId}`,
};

/**
 * Converts the named schemas reachable from `roots` (by reference, transitively) into
 * `components.schemas` entries; unreachable named schemas are left out.
 *
 * @param roots The schemas the document is about (messages, request and response bodies).
 *
 * @returns Component schemas by name, sorted by name.
 */
export function componentSchemas(roots: readonly AnySchema[]): Record<string, JsonSchema> {
  const all = toJsonSchemaDefs(Object.fromEntries(NAMED_SCHEMAS), config) as Record<string, JsonSchema>;
  const reachable = new Set<string>();
  const visit = (name: string) => {
    if (reachable.has(name)) return;
    const schema = all[name];
    if (!schema) throw new Error(`no component schema ${name}`);
    reachable.add(name);
    for (const ref of refsIn(schema)) visit(ref);
  };
  for (const root of roots) visit(nameOf(root));
  return Object.fromEntries(
    [...reachable].sort((a, b) => a.localeCompare(b)).map((name) => [name, all[name] as JsonSchema]),
  );
}

/** Names of the component schemas `schema` refers to. */
function refsIn(schema: unknown): string[] {
  if (Array.isArray(schema)) return schema.flatMap(refsIn);
  if (typeof schema !== 'object' || schema === null) return [];
  return Object.entries(schema).flatMap(([key, value]) =>
    key === '$ref' && typeof value === 'string' ? [value.replace('#/components/schemas/', '')] : refsIn(value),
  );
}

/** The `type` literal of a message schema (an object schema whose `type` entry is a literal). */
export function messageType(schema: AnySchema): string {
  const literal = (schema as { entries?: { type?: { literal?: unknown } } }).entries?.type?.literal;
  if (typeof literal !== 'string') throw new Error(`${nameOf(schema)} has no literal \`type\` entry`);
  return literal;
}

/** The members of a `variant` schema. */
export function variantMembers(schema: AnySchema): AnySchema[] {
  const options = (schema as { options?: AnySchema[] }).options;
  if (!Array.isArray(options)) throw new Error(`${schema.type} is not a variant schema`);
  return options;
}

/** The description and examples valibot metadata actions attach to a schema. */
export function metadataOf(schema: AnySchema): { title?: string; description?: string; examples: unknown[] } {
  const pipe = (schema as { pipe?: { type: string; title?: string; description?: string; examples?: unknown[] }[] })
    .pipe;
  const result: { title?: string; description?: string; examples: unknown[] } = { examples: [] };
  for (const action of pipe ?? []) {
    if (action.type === 'title') result.title = action.title;
    if (action.type === 'description') result.description = action.description;
    if (action.type === 'examples') result.examples.push(...(action.examples ?? []));
  }
  return result;
}
