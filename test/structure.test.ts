/**
 * Holds the shape of the code a newcomer finds, with Biome's own rules as biome.json sets them
 * (so `npm run lint` holds it too): no module of plugin/, adapters/, brokers/ or client/ imports
 * itself round a circle, type-only imports included (a circle of types is still a circle to the
 * reader), and no function of plugin/ (tests aside) runs longer than 120 lines.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT } from './helpers/server.ts';

const RULES = ['--only=suspicious/noImportCycles', '--only=complexity/noExcessiveLinesPerFunction'];

/** Runs Biome's linter with the two structure rules only, in `cwd` (its biome.json applies). */
const lint = (cwd: string, paths: readonly string[], flags: readonly string[] = []) => {
  const result = spawnSync(
    join(ROOT, 'node_modules/.bin/biome'),
    ['lint', '--max-diagnostics=200', '--colors=off', ...flags, ...RULES, ...paths],
    { cwd, encoding: 'utf8' },
  );
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
};

/** A function `lines` lines long, signature and closing brace included. */
const functionOf = (name: string, lines: number) =>
  `export function ${name}(): number {\n${Array.from({ length: lines - 3 }, (_, i) => `  const x${i} = ${i};`).join('\n')}\n  return 0;\n}\n`;

describe('structure', () => {
  it('has no import circle in plugin/, adapters/, brokers/, client/, and no function of plugin/ over 120 lines', () => {
    const { status, output } = lint(ROOT, ['plugin', 'adapters', 'brokers', 'client']);
    assert.equal(status, 0, output);
  });

  describe('the rules catch what they should (they can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'structure-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const write = (file: string, text: string) => {
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file), text);
    };
    copyFileSync(join(ROOT, 'biome.json'), join(dir, 'biome.json'));
    // Outside git: no ignore file to read.
    const outsideGit = ['--vcs-enabled=false'];
    write('plugin/a.ts', "import type { B } from './b.ts';\nexport interface A { b?: B }\n");
    write('plugin/b.ts', "import type { A } from './a.ts';\nexport interface B { a?: A }\n");
    write('brokers/x/c.ts', "import { d } from '../../client/d.ts';\nexport const c = (): number => d();\n");
    write('client/d.ts', "import { c } from '../brokers/x/c.ts';\nexport const d = (): number => c();\n");
    write('plugin/long.ts', functionOf('long', 125));
    write('plugin/fits.ts', functionOf('fits', 120));
    write('plugin/long.test.ts', functionOf('longTest', 300));
    write('test/long.ts', functionOf('elsewhere', 300));

    it('finds circles of type imports and across directories', () => {
      const { status, output } = lint(dir, ['plugin', 'brokers', 'client'], outsideGit);
      assert.notEqual(status, 0);
      for (const file of ['plugin/a.ts', 'plugin/b.ts', 'brokers/x/c.ts', 'client/d.ts'])
        assert.match(output, new RegExp(`${file}:\\d+:\\d+ lint/suspicious/noImportCycles`), file);
    });

    it('finds a long function in plugin/, not in its tests or elsewhere', () => {
      const { output } = lint(dir, ['plugin', 'test'], outsideGit);
      // `--only` turns the rule on everywhere at its default level (info); biome.json makes it an error in plugin/.
      const refused = (file: string) =>
        new RegExp(`${file}:\\d+:\\d+ lint/complexity/noExcessiveLinesPerFunction[^\\n]*\\n\\n  × `).test(output);
      assert.ok(refused('plugin/long\\.ts'), output);
      assert.ok(!refused('plugin/fits\\.ts'), output);
      assert.ok(!refused('plugin/long\\.test\\.ts'), output);
      assert.ok(!refused('test/long\\.ts'), output);
    });
  });
});
