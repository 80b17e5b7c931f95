/**
 * The client as a browser gets it: client/index.ts bundled and minified by esbuild (the one tsx
 * brings), ESM, with validation split into its own chunk (it is a dynamic import, loaded only
 * with `validate: true`). `size` is what a page loads without validation, gzipped.
 */
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { ROOT } from './server.ts';

/** Files of the bundle by name (`index.js` is the entry), and the entry's gzipped size. */
export interface ClientBundle {
  files: Record<string, string>;
  /** Bytes, minified, of the entry and every chunk it imports statically. */
  minified: number;
  /** The same, each file gzipped (level 9). */
  gzipped: number;
}

export async function bundleClient(): Promise<ClientBundle> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: { index: 'client/index.ts' },
    bundle: true,
    format: 'esm',
    splitting: true,
    minify: true,
    platform: 'browser',
    target: 'es2022',
    outdir: 'out',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const files: Record<string, string> = {};
  for (const file of result.outputFiles) files[file.path.slice(file.path.lastIndexOf('/') + 1)] = file.text;
  // The entry and its static imports; dynamic imports (validation) are not loaded without validate.
  const outputs = result.metafile.outputs;
  const loaded = new Set<string>();
  const visit = (path: string) => {
    if (loaded.has(path)) return;
    loaded.add(path);
    for (const imported of outputs[path]?.imports ?? []) if (imported.kind === 'import-statement') visit(imported.path);
  };
  visit('out/index.js');
  let minified = 0;
  let gzipped = 0;
  for (const path of loaded) {
    const text = files[path.slice(path.lastIndexOf('/') + 1)] ?? '';
    minified += Buffer.byteLength(text);
    gzipped += gzipSync(text, { level: 9 }).length;
  }
  return { files, minified, gzipped };
}
