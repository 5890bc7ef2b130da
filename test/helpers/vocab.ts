// A copy of a fixture checkpoint with `extra` more vocabulary rows (zeros) in its embedding and LM head, so that its
// vocabulary divides by a tensor-parallel size (the fixtures' 951 and 815 divide by none).
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openWeights } from '../../src/loaders/model-dir.js';
import { DTYPE_BYTES } from '../../src/loaders/safetensors.js';
import { writeSafetensors } from '../../src/loaders/safetensors-write.js';

export function widenVocab(fixtureDir: string, extra: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'peregrine-vocab-'));
  const config = JSON.parse(readFileSync(join(fixtureDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const V = config.vocab_size as number;
  const store = openWeights(fixtureDir);
  writeSafetensors(join(dir, 'model.safetensors'), store.names().map((name) => {
    const info = store.info(name), bytes = store.readBytes(name);
    if (!/(^|\.)embed_tokens\.weight$|^lm_head\.weight$/.test(name)) return { name, dtype: info.dtype, shape: info.shape, data: bytes };
    const data = new Uint8Array(bytes.length + extra * info.shape[1] * DTYPE_BYTES[info.dtype]);
    data.set(bytes);
    return { name, dtype: info.dtype, shape: [V + extra, info.shape[1]], data };
  }), { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, vocab_size: V + extra }));
  for (const f of readdirSync(fixtureDir)) if (f !== 'config.json' && f !== 'model.safetensors') copyFileSync(join(fixtureDir, f), join(dir, f));
  return dir;
}
