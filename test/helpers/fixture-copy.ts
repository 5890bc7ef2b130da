// A copy of a fixture checkpoint in a temporary directory with its tensors and config.json rewritten (the other files
// as they are): the base of the fixture variants for parallelism tests (vocab.ts, layers.ts).
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openWeights, type WeightStore } from '../../src/loaders/model-dir.js';
import { writeSafetensors, type TensorToWrite } from '../../src/loaders/safetensors-write.js';

/** The copy's directory: `rewrite` gives the copy's tensors from the fixture's weights and config, and the config's changes. */
export function copyFixture(fixtureDir: string, prefix: string, rewrite: (store: WeightStore, config: Record<string, unknown>) => {
  tensors: TensorToWrite[]; config: Record<string, unknown>;
}): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const config = JSON.parse(readFileSync(join(fixtureDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const out = rewrite(openWeights(fixtureDir), config);
  writeSafetensors(join(dir, 'model.safetensors'), out.tensors, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, ...out.config }));
  for (const f of readdirSync(fixtureDir)) if (f !== 'config.json' && f !== 'model.safetensors') copyFileSync(join(fixtureDir, f), join(dir, f));
  return dir;
}
