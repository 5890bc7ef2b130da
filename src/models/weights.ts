// Reading a model's weights by name from a checkpoint, checking each shape against what the config implies.
import { fail } from '../errors.js';
import type { HostWeight, StorageDType } from '../loaders/dtypes.js';
import type { WeightStore } from '../loaders/model-dir.js';
import type { Backend, Tensor } from '../ops/backend.js';

export class Checkpoint {
  /**
   * @param prefix  prepended to every name, found by `detectPrefix` (e.g. "transformer." or "bert.")
   * @param implied what the config says, for error messages (e.g. "n_embd=768, n_head=12")
   */
  constructor(readonly store: WeightStore, readonly prefix: string, private readonly implied: string) {}

  /** The first of `names` the checkpoint holds (old and new spellings of one weight). */
  private resolve(names: string[]): string {
    for (const n of names) if (this.store.has(this.prefix + n)) return this.prefix + n;
    return fail('weights-mismatch', `the checkpoint has no tensor ${this.prefix + names[0]}; the weights are not of the architecture config.json names, or are incomplete`);
  }

  /** The stored bytes of a weight whose shape must be `shape` (or its transpose, [in, out], when `transpose`). */
  raw(names: string | string[], shape: number[], transpose = false): HostWeight {
    const name = this.resolve(typeof names === 'string' ? [names] : names);
    const info = this.store.info(name);
    const want = transpose ? [shape[1], shape[0]] : shape;
    if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
      fail('weights-mismatch', `tensor ${name} has shape [${info.shape.join(', ')}] but config.json (${this.implied}) implies [${want.join(', ')}]; the config does not match the weights`);
    }
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') {
      fail('bad-safetensors', `tensor ${name} has dtype ${info.dtype}; Peregrine reads F32, F16 and BF16 weights`);
    }
    return { bytes: this.store.readBytes(name), dtype: info.dtype as StorageDType };
  }

  /** A weight on the backend, [out, in] after transposing a stored [in, out]. */
  load(backend: Backend, names: string | string[], shape: number[], transpose = false): Tensor {
    return backend.weight(this.raw(names, shape, transpose), shape, transpose);
  }

  /** Several weights of one dtype stacked along their first dimension (fused QKV). */
  loadStacked(backend: Backend, names: string[], shape: number[]): Tensor {
    const parts = names.map((n) => this.raw(n, shape));
    if (parts.some((p) => p.dtype !== parts[0].dtype)) fail('bad-safetensors', `tensors ${names.join(', ')} have different dtypes`);
    const bytes = new Uint8Array(parts.reduce((a, p) => a + p.bytes.length, 0));
    let o = 0;
    for (const p of parts) {
      bytes.set(p.bytes, o);
      o += p.bytes.length;
    }
    return backend.weight({ bytes, dtype: parts[0].dtype }, [shape[0] * names.length, ...shape.slice(1)]);
  }
}

/** Finds which of `prefixes` the checkpoint's names start with, by looking for `probe`. */
export function detectPrefix(store: WeightStore, prefixes: string[], probe: string, arch: string): string {
  for (const p of prefixes) if (store.has(p + probe)) return p;
  return fail('weights-mismatch', `the checkpoint has no ${probe} (looked under ${prefixes.map((p) => JSON.stringify(p)).join(', ')}); these weights are not a ${arch} checkpoint`);
}
