// A copy of a fixture checkpoint with `layers` decoder layers, layer l a copy of the fixture's layer l % its count, so
// that a pipeline splits it unevenly or into more stages than the fixtures' two layers allow.
import type { TensorToWrite } from '../../src/loaders/safetensors-write.js';
import { copyFixture } from './fixture-copy.js';

export function deepenLayers(fixtureDir: string, layers: number): string {
  return copyFixture(fixtureDir, 'peregrine-layers-', (store, config) => {
    const had = config.num_hidden_layers as number;
    const tensors: TensorToWrite[] = [];
    for (const name of store.names()) {
      const info = store.info(name), m = /^(.*\.layers\.)(\d+)(\..*)$/.exec(name);
      if (!m) tensors.push({ name, dtype: info.dtype, shape: info.shape, data: store.readBytes(name) });
      else for (let l = Number(m[2]); l < layers; l += had) tensors.push({ name: `${m[1]}${l}${m[3]}`, dtype: info.dtype, shape: info.shape, data: store.readBytes(name) });
    }
    return { tensors, config: { num_hidden_layers: layers } };
  });
}
