// What a command loads before it runs: the modules reached through static imports from the CLI's entry
// point and from the engine. --help and --version need commander alone; generate on the CPU loads neither
// the CUDA backend (koffi), nor the chat template engine, nor the download progress bar: each is imported
// where it is used.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const DIST_SRC = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/** The compiled modules (relative to dist/src) and the packages a module loads through static imports. */
function staticClosure(entry: string): { modules: string[]; packages: string[] } {
  const modules = new Set<string>(), packages = new Set<string>();
  const walk = (file: string): void => {
    const rel = relative(DIST_SRC, file);
    if (modules.has(rel)) return;
    modules.add(rel);
    for (const m of readFileSync(file, 'utf8').matchAll(/^(?:import|export)\s[^;]*?from\s*'([^']+)'|^import\s*'([^']+)'/gm)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith('.')) walk(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:')) packages.add(spec);
    }
  };
  walk(join(DIST_SRC, entry));
  return { modules: [...modules].sort(), packages: [...packages].sort() };
}

test('the CLI entry point loads commander and its flags, nothing of the engine', () => {
  const { modules, packages } = staticClosure('cli/main.js');
  assert.deepEqual(packages, ['commander']);
  assert.deepEqual(modules.filter((m) => !/^cli\/(main|flags|version)\.js$|^errors\.js$|^backends\/select\.js$|^loaders\/quantize-methods\.js$/.test(m)), []);
});

test('loading a model statically loads no CUDA backend, chat templates or progress bar', () => {
  const { modules, packages } = staticClosure('engine/load.js');
  assert.deepEqual(modules.filter((m) => m.startsWith('backends/cuda/') || m.startsWith('backends/cpu/') || m === 'engine/chat.js'), []);
  assert.deepEqual(packages.filter((p) => p !== '@huggingface/tokenizers'), []);
});
