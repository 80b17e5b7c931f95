/**
 * `npm run build` (and `prepack`): the published package in dist/, from the TypeScript sources.
 *
 * 1. `tsc -p tsconfig.build.json`: ESM JavaScript, declarations and source maps (sources
 *    inlined) for plugin/ and adapters/, type-checked. Relative `.ts` imports become `.js`
 *    (`rewriteRelativeImportExtensions`).
 * 2. `tsc -p tsconfig.build.deno.json`: adapters/deno.ts, emitted without a check because only
 *    Deno's own types check it (`npm run check:deno` does, in `npm test`); its output is copied
 *    into dist/adapters/.
 * 3. tsc leaves relative `.ts` specifiers in declaration files as written (they resolve there,
 *    but not in every tool): they are rewritten to `.js`, the same length, so nothing else moves.
 * 4. Every `exports` target of package.json must exist, and every `bin` target must exist and
 *    start with a `#!/usr/bin/env node` line (tsc keeps the source's); it is made executable.
 *
 * To add an entry (say `client/`): put its directory in tsconfig.build.json "include" and the
 * entry in package.json and jsr.json "exports"; test/package.test.ts holds the three together.
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './runtimes.ts';

const DIST = join(ROOT, 'dist');
const DENO_OUT = join(ROOT, '.cache', 'build-deno');

/** Runs the project's tsc; exits on failure. */
function tsc(project: string): void {
  const run = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', project], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  if (run.status !== 0) {
    console.error(`build: tsc -p ${project} failed`);
    process.exit(1);
  }
}

/** Relative `.ts` specifiers in `from '…'`, `import('…')` and `export … from '…'`. */
const RELATIVE_TS = /((?:\bfrom\s+|\bimport\s*\(\s*)(['"])\.{1,2}\/[^'"]*?)\.ts\2/g;

/** Rewrites relative `.ts` specifiers to `.js` in every declaration file under `dir`. */
function rewriteDeclarations(dir: string): number {
  let files = 0;
  for (const file of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.d.ts')) continue;
    const path = join(dir, file);
    const text = readFileSync(path, 'utf8');
    const rewritten = text.replace(RELATIVE_TS, '$1.js$2');
    if (rewritten !== text) {
      writeFileSync(path, rewritten);
      files++;
    }
  }
  return files;
}

/** Every file an `exports` target names: `"./x"` or `{ types, import, ... }`. */
function exportTargets(): string[] {
  const { exports } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    exports: Record<string, string | Record<string, string>>;
  };
  return Object.values(exports).flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)));
}

/** Every file a `bin` command names. */
function binTargets(): string[] {
  const { bin } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    bin?: string | Record<string, string>;
  };
  return bin === undefined ? [] : typeof bin === 'string' ? [bin] : Object.values(bin);
}

rmSync(DIST, { recursive: true, force: true });
rmSync(DENO_OUT, { recursive: true, force: true });
tsc('tsconfig.build.json');
tsc('tsconfig.build.deno.json');
for (const file of readdirSync(join(DENO_OUT, 'adapters'))) {
  if (file.startsWith('deno.')) cpSync(join(DENO_OUT, 'adapters', file), join(DIST, 'adapters', file));
}
rmSync(DENO_OUT, { recursive: true, force: true });
const rewritten = rewriteDeclarations(DIST);

const missing = exportTargets().filter((target) => !existsSync(join(ROOT, target)));
if (missing.length > 0) {
  console.error(`build: package.json exports name files the build did not produce:\n  ${missing.join('\n  ')}`);
  process.exit(1);
}
const badBins = binTargets().filter((target) => {
  const path = join(ROOT, target);
  if (!existsSync(path) || !readFileSync(path, 'utf8').startsWith('#!/usr/bin/env node\n')) return true;
  chmodSync(path, 0o755);
  return false;
});
if (badBins.length > 0) {
  console.error(
    `build: package.json bin names files missing or without a #!/usr/bin/env node line:\n  ${badBins.join('\n  ')}`,
  );
  process.exit(1);
}
const files = readdirSync(DIST, { recursive: true, encoding: 'utf8' }).filter((file) => file.includes('.'));
console.log(`build: ${files.length} files in dist/ (${rewritten} declaration files with .ts specifiers rewritten)`);
