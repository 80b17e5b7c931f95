/**
 * Proves plugin/ is runtime-neutral: type-checks it with no ambient runtime types
 * (tsconfig.plugin.json, `"types": []`), then scans it for runtime APIs that a type check alone
 * would not catch (a `node:` import resolves if any dependency pulls @types/node in).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const forbidden = [
  /from\s+['"]node:/,
  /import\(\s*['"]node:/,
  /require\(/,
  /\bprocess\./,
  /\bBuffer\b/,
  /\bDeno\./,
  /\bBun\./,
  /from\s+['"](ws|@hono\/node-server|@hono\/node-ws|hono\/bun|hono\/deno|hono\/cloudflare-workers)['"]/,
];

const problems: string[] = [];
for (const file of readdirSync('plugin', { recursive: true, encoding: 'utf8' })) {
  if (!file.endsWith('.ts') || file.endsWith('.test.ts')) continue;
  const lines = readFileSync(join('plugin', file), 'utf8').split('\n');
  lines.forEach((line, index) => {
    if (line.trim().startsWith('*') || line.trim().startsWith('//')) return;
    for (const pattern of forbidden)
      if (pattern.test(line)) problems.push(`plugin/${file}:${index + 1}: ${line.trim()}`);
  });
}
if (problems.length > 0) {
  console.error(`plugin/ must stay runtime-neutral; these lines use a runtime API:\n${problems.join('\n')}`);
  process.exit(1);
}

const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.plugin.json'], {
  stdio: 'inherit',
});
if (tsc.status !== 0) {
  console.error('plugin/ does not type-check without runtime types (tsconfig.plugin.json)');
  process.exit(1);
}
console.log('plugin/ is runtime-neutral: no runtime API, type-checks with "types": []');
