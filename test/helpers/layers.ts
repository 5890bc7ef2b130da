// A copy of a fixture checkpoint with `layers` decoder layers, layer l a copy of the fixture's layer l % its count, so
// that a pipeline splits it unevenly or into more stages than the fixtures' two layers allow.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openWeights } from '../../src/loaders/model-dir.js';
import { writeSafetensors } from '../../src/loaders/safetensors-write.js';

export function deepenLayers(fixtureDir: string, layers: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'peregrine-layers-'));
  const config = JSON.parse(readFileSync(join(fixtureDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const had = config.num_hidden_layers as number;
  const store = openWeights(fixtureDir);
  const tensors = [];
  for (const name of store.names()) {
    const info = store.info(name), m = /^(.*\.layers\.)(\d+)(\..*)$/.exec(name);
    if (!m) {
      tensors.push({ name, dtype: info.dtype, shape: info.shape, data: store.readBytes(name) });
      continue;
    }
    for (let l = Number(m[2]); l < layers; l += had) tensors.push({ name: `${m[1]}${l}${m[3]}`, dtype: info.dtype, shape: info.shape, data: store.readBytes(name) });
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: layers }));
  for (const f of readdirSync(fixtureDir)) if (f !== 'config.json' && f !== 'model.safetensors') copyFileSync(join(fixtureDir, f), join(dir, f));
  return dir;
}
