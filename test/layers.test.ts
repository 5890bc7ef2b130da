// Imports point down the layers (DESIGN.md): a module may import its own layer and the layers below it,
// never one above. ops holds the op contract (interfaces, table layouts, the counter-based random numbers)
// that the backends implement, so it sits below them; the two backends never import each other.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/** Lowest first; each entry is a top-level directory or file of src/. */
const LAYERS: string[][] = [
  ['errors.ts'],
  ['loaders'],
  ['ops'],
  ['backends', 'tokenizers'],
  ['models'],
  ['runtime'],
  ['engine'],
  ['cli', 'server'],
  ['index.ts'],
];

function layerOf(path: string): number {
  const top = path.split('/')[0];
  const i = LAYERS.findIndex((l) => l.includes(top));
  assert.ok(i >= 0, `src/${top} is in no layer: add it to LAYERS in test/layers.test.ts`);
  return i;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** The relative modules a source imports or re-exports, statically or through import(), as paths under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)].map((m) => m[1]);
  return specs.map((s) => relative(SRC, join(dirname(file), s)).replace(/\.js$/, '.ts'));
}

test('every import in src/ points to its own layer or one below', () => {
  const upward: string[] = [];
  for (const file of sources(SRC)) {
    const from = relative(SRC, file);
    for (const to of importsOf(file)) if (layerOf(to) > layerOf(from)) upward.push(`${from} -> ${to}`);
  }
  assert.deepEqual(upward, []);
});

test('the CPU and CUDA backends do not import each other', () => {
  const crossing: string[] = [];
  for (const file of sources(join(SRC, 'backends'))) {
    const from = relative(SRC, file);
    const own = from.split('/')[1];
    if (own !== 'cpu' && own !== 'cuda') continue;
    for (const to of importsOf(file)) {
      const [top, sub] = to.split('/');
      if (top === 'backends' && (sub === 'cpu' || sub === 'cuda') && sub !== own) crossing.push(`${from} -> ${to}`);
    }
  }
  assert.deepEqual(crossing, []);
});
