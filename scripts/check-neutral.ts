/**
 * Proves plugin/ and client/ are runtime-neutral: type-checks them with no ambient runtime types
 * (tsconfig.plugin.json, `"types": []`), then scans them for runtime APIs that a type check alone
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

/** The runtime-neutral directories: the core, the client and the dashboard. */
const NEUTRAL = ['plugin', 'client', 'dashboard'];

const problems: string[] = [];
for (const dir of NEUTRAL) {
  for (const file of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts') || file.endsWith('.test.ts')) continue;
    const lines = readFileSync(join(dir, file), 'utf8').split('\n');
    lines.forEach((line, index) => {
      if (line.trim().startsWith('*') || line.trim().startsWith('//')) return;
      for (const pattern of forbidden)
        if (pattern.test(line)) problems.push(`${dir}/${file}:${index + 1}: ${line.trim()}`);
    });
  }
}
if (problems.length > 0) {
  console.error(
    `plugin/, client/ and dashboard/ must stay runtime-neutral; these lines use a runtime API:\n${problems.join('\n')}`,
  );
  process.exit(1);
}

const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.plugin.json'], {
  stdio: 'inherit',
});
if (tsc.status !== 0) {
  console.error('plugin/, client/ or dashboard/ does not type-check without runtime types (tsconfig.plugin.json)');
  process.exit(1);
}
console.log('plugin/, client/ and dashboard/ are runtime-neutral: no runtime API, type-check with "types": []');
