// A tensor-parallel rank's view of a checkpoint (Megatron-style splits): the matrices of a column-parallel layer cut
// along their rows (outputs) and those of a row-parallel layer along their columns (inputs), the rank reading only its
// part; every other tensor whole. A model loads from this view with its per-rank sizes, as it would a smaller model.
import { fail } from '../errors.js';
import { QUANT_TYPES } from '../loaders/quant.js';
import type { TensorInfo } from '../loaders/safetensors.js';
import { WeightStore, type TensorSource } from '../loaders/model-dir.js';
import type { ParallelRank } from '../ops/backend.js';

/** Along which dimension a tensor is cut into equal parts, one a rank: 0 (rows; a vector's elements) or 1 (columns). */
export type Cut = 0 | 1;

const FLOAT_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

/** The tensors of `store` as rank `p.rank` of `p.size` sees them; `cutOf` says which are cut, and how. */
export function shardStore(store: WeightStore, p: ParallelRank, cutOf: (name: string) => Cut | null): WeightStore {
  return new WeightStore([new ShardSource(store, p, cutOf)]);
}

class ShardSource implements TensorSource {
  readonly tensors = new Map<string, TensorInfo>();
  private readonly cuts = new Map<string, Cut>();

  constructor(private readonly store: WeightStore, private readonly p: ParallelRank, cutOf: (name: string) => Cut | null) {
    for (const name of store.names()) {
      const info = store.info(name), cut = cutOf(name);
      if (cut === null) {
        this.tensors.set(name, info);
        continue;
      }
      const bytes = FLOAT_BYTES[info.dtype];
      if (!bytes) {
        fail('unsupported-config', `tensor ${name} is stored as ${info.dtype}; tensor parallelism splits F32, F16 and BF16 weights only `
          + `(not yet ${QUANT_TYPES.join(', ')} or int4), so load this checkpoint without it`);
      }
      const dims = info.shape;
      if (cut >= dims.length || dims[cut] % p.size !== 0) {
        fail('unsupported-config', `tensor ${name} of shape [${dims.join(', ')}] does not split into ${p.size} equal parts along dimension ${cut}; `
          + 'use a tensor-parallel size that divides it');
      }
      const shape = dims.map((d, i) => (i === cut ? d / p.size : d));
      this.tensors.set(name, { ...info, shape, begin: 0, end: shape.reduce((a, d) => a * d, bytes) });
      this.cuts.set(name, cut);
    }
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) fail('weights-mismatch', `the checkpoint has no tensor named ${name}`);
    return t;
  }

  readBytes(name: string): Uint8Array {
    const whole = this.store.readBytes(name), cut = this.cuts.get(name);
    if (cut === undefined) return whole;
    const t = this.info(name), esize = FLOAT_BYTES[t.dtype];
    if (cut === 0) {
      const part = t.end - t.begin;
      return whole.slice(this.p.rank * part, (this.p.rank + 1) * part);
    }
    // columns rank * cols .. (rank + 1) * cols - 1 of each row
    const [rows, cols] = t.shape, rowBytes = cols * esize, from = this.p.rank * rowBytes, stride = rowBytes * this.p.size;
    const out = new Uint8Array(rows * rowBytes);
    for (let r = 0; r < rows; r++) out.set(whole.subarray(r * stride + from, r * stride + from + rowBytes), r * rowBytes);
    return out;
  }

  close(): void {}
}
