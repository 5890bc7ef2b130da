// What the encoder-decoder architectures share: their dimensions, the memory (each decoder layer's
// cross-attention keys and values of the encoder output), scaled embeddings and Marian's sinusoids.
import { toFloat32, unquantized } from '../loaders/dtypes.js';
import type { Backend, Norm, Tensor } from '../ops/backend.js';
import type { ModelInfo, Pass } from './model.js';
import type { Checkpoint } from './weights.js';

export interface Seq2SeqDims {
  vocab: number;
  hidden: number;
  encLayers: number;
  decLayers: number;
  /** the decoder's positions (and the encoder's): Infinity-free, the largest a sequence may use */
  maxPositions: number;
  decoderStart: number;
  eos: number[];
}

export function seq2seqInfo(className: string, c: Seq2SeqDims, heads: number, parameters: number): ModelInfo {
  return {
    architecture: className, kind: 'causal-lm', vocabSize: c.vocab, hidden: c.hidden, layers: c.decLayers, heads,
    maxPositions: c.maxPositions, parameters,
  };
}

/**
 * Each decoder layer's memory: [k | v] = norm?(x) [Wk; Wv]^T + [bk; bv] of the encoder output x, written at the
 * source rows' positions of their sequences' memory caches (the pass's caches and block tables).
 */
export function memoryKV(p: Pass, x: Tensor, norm: Norm | null, layers: { kvW: Tensor; kvB: Tensor | null }[], width: number): void {
  const b = p.ops, n = p.n, T = p.capacity;
  const kv = p.buffer('memory-kv', [T, 2 * width]);
  layers.forEach((L, l) => {
    if (norm) b.normLinear(kv, x, norm, L.kvW, L.kvB, 'none', n, p.buffer('memory-normed', [T, x.shape[1]]));
    else b.linear(kv, x, L.kvW, L.kvB, 'none', n);
    const { k, v } = p.cache(l);
    b.writeKV(kv, k, v, p.blockTables, p.slots, p.positions, n);
  });
}

/** A weight times `scale` (in f32 before the backend's dtype): embeddings scaled by sqrt(d_model). */
export function loadScaled(backend: Backend, ckpt: Checkpoint, names: string[], shape: number[], scale: number): Tensor {
  const raw = unquantized(ckpt.raw(names, shape), shape);
  // a backend of shapes reads no bytes
  if (raw.bytes.length === 0) return backend.weight(raw, shape);
  const values = toFloat32(raw.bytes, raw.dtype).map((v) => Math.fround(v * scale));
  return backend.weight({ bytes: new Uint8Array(values.buffer), dtype: 'F32' }, shape);
}

/**
 * Marian's fixed positions (MarianSinusoidalPositionalEmbedding): position p, dimension j < H/2 (rounded up) holds
 * sin(p / 10000^(2j / H)), the rest cos(p / 10000^(2j' / H)) for the odd j = 2j' + 1, computed in float64 as numpy does.
 */
export function sinusoidTable(backend: Backend, positions: number, H: number): Tensor {
  const out = new Float32Array(positions * H);
  const half = Math.ceil(H / 2);
  for (let p = 0; p < positions; p++) {
    for (let j = 0; j < H; j++) {
      const angle = p / 10000 ** ((2 * Math.floor(j / 2)) / H);
      if (j % 2 === 0) out[p * H + j / 2] = Math.sin(angle);
      else out[p * H + half + (j - 1) / 2] = Math.cos(angle);
    }
  }
  return backend.weight({ bytes: new Uint8Array(out.buffer), dtype: 'F32' }, [positions, H]);
}
