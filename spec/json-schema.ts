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
    [...reachable].sort((a, b) => a.localeCompare(b)).map((name) => [name, withTitles(all[name] as JsonSchema, name)]),
  );
}

/** `errors_by_kind` → `ErrorsByKind`. */
function pascalCase(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join('');
}

/** A union member by its `type` literal (`StatusUpdate`), or else by its position (`2`). */
function memberName(member: unknown, index: number): string {
  const literal = (member as { properties?: { type?: { const?: unknown } } } | null)?.properties?.type?.const;
  return typeof literal === 'string' ? pascalCase(literal) : String(index + 1);
}

/** An inline schema a model generator turns into a type of its own, so it needs a name. */
function needsTitle(schema: Record<string, unknown>): boolean {
  return (
    schema.type === 'object' ||
    'properties' in schema ||
    Array.isArray(schema.anyOf) ||
    Array.isArray(schema.oneOf) ||
    (Array.isArray(schema.enum) && schema.enum.length > 1)
  );
}

/**
 * Gives the component schema and every inline object, union or enum in it a `title` derived from
 * its path (`HubStats` → `errors_by_kind` → `HubStatsErrorsByKind`; array items end in `Item`,
 * union members in their `type` literal or index, map values in `Value`), so model generators such as modelina
 * name the types they make instead of numbering them (`AnonymousSchema_20`). Titles the valibot
 * schemas already set are kept. Pure and order-stable: the same input gives the same titles.
 *
 * @param schema A component schema.
 * @param name Its component name.
 *
 * @returns A copy with the titles.
 */
export function withTitles(schema: JsonSchema, name: string): JsonSchema {
  const walk = (node: unknown, path: string, root: boolean): unknown => {
    if (Array.isArray(node)) return node.map((item) => walk(item, path, false));
    if (typeof node !== 'object' || node === null) return node;
    const source = node as Record<string, unknown>;
    if (typeof source.$ref === 'string') return source;
    // The component's own name, not a prose title ("Connection established"), prefixes the rest.
    const title = root ? name : path;
    const result: Record<string, unknown> = {};
    if (needsTitle(source) && typeof source.title !== 'string') result.title = title;
    for (const [key, value] of Object.entries(source)) {
      if (key === 'properties' && typeof value === 'object' && value !== null) {
        result[key] = Object.fromEntries(
          Object.entries(value).map(([property, child]) => [
            property,
            walk(child, title + pascalCase(property), false),
          ]),
        );
      } else if (key === 'items' || key === 'additionalItems') {
        result[key] = walk(value, `${title}Item`, false);
      } else if (key === 'prefixItems' && Array.isArray(value)) {
        result[key] = value.map((child, index) => walk(child, `${title}Item${index + 1}`, false));
      } else if (key === 'additionalProperties') {
        result[key] = walk(value, `${title}Value`, false);
      } else if ((key === 'anyOf' || key === 'oneOf' || key === 'allOf') && Array.isArray(value)) {
        result[key] = value.map((child, index) => walk(child, title + memberName(child, index), false));
      } else {
        result[key] = value;
      }
    }
    return result;
  };
  return walk(schema, name, true) as JsonSchema;
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
