// Random weights under Hugging Face names, made as the loader reads them: no files (bench/llama.ts, bench/seq2seq.ts).
import { QUANT_BLOCKS, isQuantType, type QuantType } from '../src/loaders/quant.js';
import type { TensorSource } from '../src/loaders/model-dir.js';
import type { TensorInfo } from '../src/loaders/safetensors.js';

/** byte offsets of the fp16 scales of each block type (quantized-GEMV test: small finite values there, random bytes elsewhere) */
const SCALES: Record<QuantType, number[]> = { Q8_0: [0], Q4_0: [0], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208] };

export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  /** F32 tensors only: 'ones' (norm gains, the default), 'zeros' (biases, norm shifts) or one value for all */
  fill?: 'ones' | 'zeros' | number;
}

/**
 * Random weights: BF16 and F16 with |x| in [2^-9, 2^-5) (random sign and mantissa), I8 random bytes, F32 filled with
 * ones, zeros or one value,
 * quantized blocks of random bytes with small finite scales. The bytes depend on the tensor's name alone, so two
 * loads of one configuration read the same weights (bench/quant.ts compares their logits).
 */
export class RandomWeights implements TensorSource {
  readonly tensors = new Map<string, TensorInfo>();
  private readonly fills = new Map<string, 'ones' | 'zeros' | number>();

  constructor(specs: WeightSpec[]) {
    for (const s of specs) {
      this.tensors.set(s.name, { name: s.name, dtype: s.dtype, shape: s.shape, begin: 0, end: bytesOf(s.shape, s.dtype) });
      if (s.fill) this.fills.set(s.name, s.fill);
    }
  }

  info(name: string): TensorInfo {
    return this.tensors.get(name)!;
  }

  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    const out = new Uint8Array(t.end);
    if (t.dtype === 'F32') {
      const fill = this.fills.get(name) ?? 'ones';
      new Float32Array(out.buffer).fill(fill === 'ones' ? 1 : fill === 'zeros' ? 0 : fill);
      return out;
    }
    seededFill(out, name);
    if (t.dtype === 'BF16' || t.dtype === 'F16') {
      // a small exponent (2^-9 .. 2^-6), random sign and mantissa
      const bits = new Uint16Array(out.buffer);
      const [keep, bias, shift] = t.dtype === 'BF16' ? [0x807f, 127, 7] : [0x83ff, 15, 10];
      for (let i = 0; i < bits.length; i++) bits[i] = (bits[i] & keep) | ((bias - 9 + (bits[i] & 3)) << shift);
      return out;
    }
    if (t.dtype === 'I8') return out;
    const q = t.dtype as QuantType, size = QUANT_BLOCKS[q].bytes;
    for (let b = 0; b < out.length / size; b++) for (const at of SCALES[q]) { out[b * size + at] = 0x00; out[b * size + at + 1] = 0x14; } // fp16 0.00098
    return out;
  }

  close(): void {}
}

/** xorshift32 words seeded by an FNV-1a hash of `name` (fast, and the same bytes for the same name). */
function seededFill(out: Uint8Array, name: string): void {
  let s = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) s = Math.imul(s ^ name.charCodeAt(i), 0x01000193);
  s = s >>> 0 || 1;
  const words = new Uint32Array(out.buffer, out.byteOffset, out.length >> 2);
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    words[i] = s;
  }
  for (let i = words.length * 4; i < out.length; i++) out[i] = (s = Math.imul(s, 0x01000193) + i) & 0xff;
}

function bytesOf(shape: number[], dtype: string): number {
  const n = shape.reduce((a, d) => a * d, 1);
  if (isQuantType(dtype)) return (n / QUANT_BLOCKS[dtype].elements) * QUANT_BLOCKS[dtype].bytes;
  return n * (dtype === 'F32' ? 4 : dtype === 'I8' ? 1 : 2);
}
