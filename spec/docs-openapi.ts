/**
 * Renders openapi.yaml as one small static HTML page (docs/http.html): paths, operations,
 * parameters, request bodies with examples, responses and component schemas. Written here, a
 * few hundred lines, because the usual renderers (Redoc, Swagger UI, Scalar) are megabytes of
 * JavaScript and none is installed; this page needs no script at all and works offline.
 */

/** Escapes text for an HTML text node or attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/**
 * The Markdown the spec descriptions use: paragraphs and `code` spans. Everything else is
 * escaped text, so a description can never inject markup.
 */
export function inlineMarkdown(text: string): string {
  return text
    .trim()
    .split(/\n\s*\n/)
    .map(
      (paragraph) =>
        `<p>${paragraph
          .split(/(`[^`]+`)/)
          .map((part) =>
            part.length > 2 && part.startsWith('`') && part.endsWith('`')
              ? `<code>${escapeHtml(part.slice(1, -1))}</code>`
              : escapeHtml(part),
          )
          .join('')}</p>`,
    )
    .join('');
}

type Schema = Record<string, unknown>;
type Operation = {
  operationId?: string;
  summary?: string;
  description?: string;
  parameters?: { name: string; in: string; required?: boolean; description?: string; schema?: Schema }[];
  requestBody?: { required?: boolean; description?: string; content?: Record<string, Media> };
  responses?: Record<string, { description?: string; content?: Record<string, Media> }>;
};
type Media = { schema?: Schema; examples?: Record<string, { value?: unknown }>; example?: unknown };
type Document = {
  info: { title: string; version: string; description?: string };
  servers?: { url: string; description?: string }[];
  paths?: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
};

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** The anchor of a component schema. */
function schemaAnchor(name: string): string {
  return `schema-${name}`;
}

/** The anchor of an operation. */
function operationAnchor(method: string, path: string, operation: Operation): string {
  return `op-${operation.operationId ?? `${method}-${path.replace(/[^A-Za-z0-9]+/g, '-')}`}`;
}

/** A one-line type: `string`, `integer ≥ 0`, a link to a component, `array of X`, `A | B`. */
function typeOf(schema: Schema | undefined): string {
  if (!schema) return '';
  if (typeof schema.$ref === 'string') {
    const name = schema.$ref.replace('#/components/schemas/', '');
    return `<a href="#${schemaAnchor(name)}">${escapeHtml(name)}</a>`;
  }
  if ('const' in schema) return `<code>${escapeHtml(JSON.stringify(schema.const))}</code>`;
  if (Array.isArray(schema.enum))
    return schema.enum.map((value) => `<code>${escapeHtml(JSON.stringify(value))}</code>`).join(' | ');
  for (const key of ['anyOf', 'oneOf'] as const) {
    if (Array.isArray(schema[key])) return (schema[key] as Schema[]).map(typeOf).join(' | ');
  }
  if (schema.type === 'array') return `array of ${typeOf(schema.items as Schema | undefined) || 'any'}`;
  const type = Array.isArray(schema.type)
    ? schema.type.join(' | ')
    : String(schema.type ?? (schema.properties ? 'object' : 'any'));
  return escapeHtml(type);
}

/** Constraints worth a reader's eye, as short text. */
function constraintsOf(schema: Schema): string {
  const parts: string[] = [];
  const add = (key: string, label: string) => {
    if (schema[key] !== undefined) parts.push(`${label} ${JSON.stringify(schema[key])}`);
  };
  add('minimum', '≥');
  add('exclusiveMinimum', '>');
  add('maximum', '≤');
  add('exclusiveMaximum', '<');
  add('minLength', 'min length');
  add('maxLength', 'max length');
  add('minItems', 'min items');
  add('maxItems', 'max items');
  add('pattern', 'pattern');
  add('format', 'format');
  add('default', 'default');
  return parts.length ? `<div class="rules">${escapeHtml(parts.join(', '))}</div>` : '';
}

/** The properties of an object schema as a table; inline objects nest. */
function propertiesTable(schema: Schema): string {
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  const required = new Set((schema.required as string[] | undefined) ?? []);
  const rows = Object.entries(properties).map(([name, property]) => {
    const nested = !property.$ref && property.properties ? propertiesTable(property) : '';
    const items = property.items as Schema | undefined;
    const nestedItems = items && !items.$ref && items.properties ? propertiesTable(items) : '';
    return `<tr><td><code>${escapeHtml(name)}</code>${required.has(name) ? ' <span class="req">required</span>' : ''}</td><td>${typeOf(property)}${constraintsOf(property)}</td><td>${property.description ? inlineMarkdown(String(property.description)) : ''}${nested}${nestedItems}</td></tr>`;
  });
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    rows.push(
      `<tr><td><em>any other key</em></td><td>${typeOf(schema.additionalProperties as Schema)}</td><td></td></tr>`,
    );
  }
  return rows.length
    ? `<table class="props"><thead><tr><th>Field</th><th>Type</th><th>Description</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
    : '';
}

/** A schema in full: its type line, description, fields, and union members. */
function schemaBlock(schema: Schema): string {
  const members = (['anyOf', 'oneOf', 'allOf'] as const).flatMap((key) =>
    Array.isArray(schema[key])
      ? [
          `<p class="muted">${key === 'allOf' ? 'All of' : 'One of'}:</p><ul>${(schema[key] as Schema[])
            .map(
              (member) =>
                `<li>${member.title ? `<strong>${escapeHtml(String(member.title))}</strong>: ` : ''}${typeOf(member)}${propertiesTable(member)}</li>`,
            )
            .join('')}</ul>`,
        ]
      : [],
  );
  return `<p class="type">${typeOf(schema)}${constraintsOf(schema)}</p>${schema.description ? inlineMarkdown(String(schema.description)) : ''}${propertiesTable(schema)}${members.join('')}`;
}

/** Request or response content: media type, schema type and examples. */
function contentBlock(content: Record<string, Media> | undefined): string {
  if (!content) return '';
  return Object.entries(content)
    .map(([mediaType, media]) => {
      const examples = [
        ...(media.example !== undefined ? [media.example] : []),
        ...Object.values(media.examples ?? {}).map((example) => example.value),
      ];
      return `<div class="media"><code>${escapeHtml(mediaType)}</code> ${typeOf(media.schema)}${examples
        .map((example) => `<pre>${escapeHtml(JSON.stringify(example, null, 2))}</pre>`)
        .join('')}</div>`;
    })
    .join('');
}

function operationBlock(method: string, path: string, operation: Operation): string {
  const parameters = operation.parameters ?? [];
  const parameterRows = parameters
    .map(
      (parameter) =>
        `<tr><td><code>${escapeHtml(parameter.name)}</code>${parameter.required ? ' <span class="req">required</span>' : ''}</td><td>${escapeHtml(parameter.in)}</td><td>${typeOf(parameter.schema)}${parameter.schema ? constraintsOf(parameter.schema) : ''}</td><td>${parameter.description ? inlineMarkdown(parameter.description) : ''}</td></tr>`,
    )
    .join('');
  const responses = Object.entries(operation.responses ?? {})
    .map(
      ([status, response]) =>
        `<tr><td class="status s${escapeHtml(status[0] ?? '')}">${escapeHtml(status)}</td><td>${response.description ? inlineMarkdown(response.description) : ''}</td><td>${contentBlock(response.content)}</td></tr>`,
    )
    .join('');
  const body = operation.requestBody;
  return `<section class="operation" id="${escapeHtml(operationAnchor(method, path, operation))}">
<h3><span class="method m-${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h3>
${operation.summary ? `<p class="summary">${escapeHtml(operation.summary)}</p>` : ''}
${operation.description ? inlineMarkdown(operation.description) : ''}
${parameterRows ? `<h4>Parameters</h4><table><thead><tr><th>Name</th><th>In</th><th>Type</th><th>Description</th></tr></thead><tbody>${parameterRows}</tbody></table>` : ''}
${body ? `<h4>Request body${body.required ? ' <span class="req">required</span>' : ''}</h4>${body.description ? inlineMarkdown(body.description) : ''}${contentBlock(body.content)}` : ''}
${responses ? `<h4>Responses</h4><table><thead><tr><th>Status</th><th>Description</th><th>Content</th></tr></thead><tbody>${responses}</tbody></table>` : ''}
</section>`;
}

const STYLES = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;background:#fff}
nav{position:fixed;top:0;left:0;bottom:0;width:16rem;overflow-y:auto;background:#e5e7eb;padding:2rem 1rem 4rem}
nav h1{font-size:1.25rem;font-weight:300;margin:0 0 1.5rem}
nav h2{font-size:.75rem;text-transform:uppercase;font-weight:400;color:#374151;margin:1.5rem 0 .5rem}
nav ul{list-style:none;margin:0;padding:0}
nav li{margin:.35rem 0;font-size:.85rem;word-break:break-all}
nav a{color:#374151;text-decoration:none}
nav a:hover{color:#111827}
main{margin-left:16rem;padding:2rem 3rem;max-width:72rem}
h2{font-size:1.5rem;margin:2.5rem 0 1rem;border-bottom:1px solid #e5e7eb;padding-bottom:.25rem}
h3{font-size:1.1rem;margin:0 0 .5rem}
h4{margin:1rem 0 .25rem;font-size:.9rem}
.operation,.schema{border:1px solid #e5e7eb;border-radius:.375rem;padding:1rem 1.25rem;margin:0 0 1.25rem}
.method{display:inline-block;min-width:4rem;text-align:center;border-radius:.25rem;color:#fff;font-size:.8rem;padding:.1rem .5rem;background:#6b7280}
.m-get{background:#2563eb}.m-post{background:#059669}.m-put,.m-patch{background:#d97706}.m-delete{background:#dc2626}
.summary{font-weight:600;margin:.25rem 0}
.muted,.rules{color:#6b7280;font-size:.8rem}
.req{color:#b91c1c;font-size:.75rem}
.type{margin:.25rem 0}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f4f6;border-radius:.2rem;padding:.05rem .25rem}
pre{background:#1f2937;color:#e5e7eb;padding:.75rem;border-radius:.375rem;overflow:auto;font:12px/1.4 ui-monospace,monospace}
table{border-collapse:collapse;width:100%;margin:.25rem 0 .5rem}
th,td{text-align:left;vertical-align:top;border-top:1px solid #e5e7eb;padding:.35rem .5rem}
th{font-size:.75rem;text-transform:uppercase;color:#6b7280;font-weight:500}
td p{margin:0 0 .35rem}
table.props table.props{margin-top:.5rem;background:#f9fafb}
.status{font-weight:700}.s2{color:#059669}.s4{color:#d97706}.s5{color:#dc2626}
.media{margin:.25rem 0}
a{color:#0f766e}
`;

/**
 * Builds the page.
 *
 * @param document openapi.yaml, parsed.
 * @param links Pages to link from the navigation, by label (e.g. the WebSocket docs).
 *
 * @returns The HTML.
 */
export function renderOpenApiPage(document: Document, links: Record<string, string> = {}): string {
  const operations = Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
    METHODS.filter((method) => item[method]).map((method) => ({ method, path, operation: item[method] as Operation })),
  );
  const schemas = Object.entries(document.components?.schemas ?? {});
  const title = `${document.info.title} ${document.info.version}`;
  const nav = `<nav>
<h1>${escapeHtml(title)}</h1>
<ul>${Object.entries(links)
    .map(([label, href]) => `<li><a href="${escapeHtml(href)}">${escapeHtml(label)}</a></li>`)
    .join('')}<li><a href="#introduction">Introduction</a></li></ul>
<h2><a href="#operations">Operations</a></h2>
<ul>${operations
    .map(
      ({ method, path, operation }) =>
        `<li><a href="#${escapeHtml(operationAnchor(method, path, operation))}"><span class="method m-${method}">${method.toUpperCase()}</span> ${escapeHtml(path)}</a></li>`,
    )
    .join('')}</ul>
<h2><a href="#schemas">Schemas</a></h2>
<ul>${schemas.map(([name]) => `<li><a href="#${schemaAnchor(name)}">${escapeHtml(name)}</a></li>`).join('')}</ul>
</nav>`;
  const servers = (document.servers ?? [])
    .map(
      (server) =>
        `<li><code>${escapeHtml(server.url)}</code>${server.description ? `: ${inlineMarkdown(server.description).replace(/^<p>|<\/p>$/g, '')}` : ''}</li>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="npm run docs (spec/docs-openapi.ts)">
<title>${escapeHtml(`${title}: HTTP API`)}</title>
<style>${STYLES}</style>
</head>
<body>
${nav}
<main>
<section id="introduction">
<h2>${escapeHtml(title)}</h2>
${document.info.description ? inlineMarkdown(document.info.description) : ''}
${servers ? `<h4>Servers</h4><ul>${servers}</ul>` : ''}
</section>
<section id="operations">
<h2>Operations</h2>
${operations.map(({ method, path, operation }) => operationBlock(method, path, operation)).join('\n')}
</section>
<section id="schemas">
<h2>Schemas</h2>
${schemas.map(([name, schema]) => `<section class="schema" id="${schemaAnchor(name)}"><h3>${escapeHtml(name)}</h3>${schemaBlock(schema)}</section>`).join('\n')}
</section>
</main>
</body>
</html>
`;
}
