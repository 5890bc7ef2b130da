// Quantizing float weights at load (LoadOptions.quantize): a [rows, cols] matrix into ggml blocks, which the
// quantized linear layers of both backends then read as they read a GGUF file's (src/backends/cuda/qlinear.ts,
// cpu/linear.ts). Bit for bit ggml's reference quantizers (ggml-quants.c), so a file quantized by llama.cpp's tools
// and a checkpoint quantized here hold the same blocks. The CPU backend quantizes with these; the GPU quantizes on
// the device (kernels/dequant.cu, quantize_weight_*), bit for bit the same.
// - int8 -> Q8_0: per 32 weights, d = max|w| / 127 (stored as f16), q = round(w / d) (halves away from zero).
import { fail } from '../errors.js';
import { f32ToF16Bits, toFloat32, transpose2d, type HostWeight, type StorageDType } from './dtypes.js';
import { QUANT_BLOCKS, type QuantType } from './quant.js';

const f = Math.fround;

/** quantize_row_q8_0_ref over `rows` rows of `cols` values (cols a multiple of 32). */
export function quantizeQ8_0(x: Float32Array, rows: number, cols: number): Uint8Array {
  const blocks = (rows * cols) / 32, out = new Uint8Array(blocks * 34);
  const q = new Int8Array(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const x0 = b * 32, o = b * 34;
    let amax = 0;
    for (let e = 0; e < 32; e++) {
      const a = Math.abs(x[x0 + e]);
      // a NaN is passed over, as fmaxf does on the GPU
      if (a > amax) amax = a;
    }
    const d = f(amax / 127), id = d ? f(1 / d) : 0;
    const h = f32ToF16Bits(d);
    out[o] = h & 0xff;
    out[o + 1] = h >> 8;
    for (let e = 0; e < 32; e++) {
      const v = f(x[x0 + e] * id);
      q[o + 2 + e] = v < 0 ? -Math.round(-v) : Math.round(v);
    }
  }
  return out;
}

/** Refuses, naming the tensor, a weight of `shape` [out, in] whose rows are not whole blocks of `type`. */
export function checkQuantizable(shape: readonly number[], type: QuantType, name: string): void {
  const { elements } = QUANT_BLOCKS[type];
  if (shape.length !== 2 || shape[1] % elements !== 0) {
    fail('bad-argument', `tensor ${name} has rows of ${shape[shape.length - 1]} weights, not a multiple of ${elements}: it cannot be quantized to ${type}; load the model without --quantize`);
  }
}

/** A float weight of `shape` [out, in] (stored [in, out] when `transpose`) as blocks of `type` (checkQuantizable first). */
export function quantizeWeight(src: HostWeight & { dtype: StorageDType }, shape: readonly number[], transpose: boolean, type: QuantType): HostWeight {
  const [rows, cols] = shape;
  const data = toFloat32(src.bytes, src.dtype);
  const x = transpose ? transpose2d(data, cols, rows) : data;
  if (type !== 'Q8_0') throw new Error(`internal: no quantizer for ${type}`);
  return { bytes: quantizeQ8_0(x, rows, cols), dtype: type };
}
