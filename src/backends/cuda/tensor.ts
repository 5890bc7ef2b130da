// Device tensors: a device address, the bytes it spans, and whether this tensor owns the allocation.
import { byteSize, type DType, type Tensor } from '../../ops/backend.js';

export class CudaTensor implements Tensor {
  readonly bytes: number;
  /**
   * @param perm the device address of an int4 weight's input order where its inputs are stored in another order than
   *   the layer's (GPTQ's act-order; 0 otherwise): x is gathered into that order first (src/backends/cuda/qlinear.ts)
   */
  constructor(readonly shape: readonly number[], readonly dtype: DType, readonly ptr: number, readonly owned: boolean, readonly perm = 0) {
    this.bytes = byteSize(shape, dtype);
  }
}

/** The device address of a tensor, 0 for none. */
export function ptr(t: Tensor | null): number {
  return t ? (t as CudaTensor).ptr : 0;
}

/** Kernel name suffix of a dtype (kernels/common.cuh FOR_EACH_DTYPE). */
export function sfx(dtype: DType): 'f32' | 'f16' | 'bf16' {
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') throw new Error(`internal: no float kernels for ${dtype} tensors`);
  return dtype;
}
