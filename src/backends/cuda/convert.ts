// Launcher for kernels/convert.cu: checkpoint weights to the device, converted to the compute dtype (and transposed)
// there.
import type { HostWeight, StorageDType } from '../../loaders/dtypes.js';
import type { CudaContext } from './context.js';
import { sfx, type CudaTensor } from './tensor.js';

const STORED = { F32: 'f32', F16: 'f16', BF16: 'bf16' } as const;

/** Copies checkpoint bytes to `dst`, converting dtype and transposing ([in, out] -> [out, in]) on the device. */
export function uploadWeight(c: CudaContext, dst: CudaTensor, src: HostWeight & { dtype: StorageDType }, shape: number[], transpose: boolean,
  alloc: (bytes: number) => number): void {
  const from = STORED[src.dtype];
  if (from === dst.dtype && !transpose) {
    c.driver.call('cuMemcpyHtoD', dst.ptr, src.bytes, src.bytes.length);
    return;
  }
  const staging = alloc(src.bytes.length);
  try {
    c.driver.call('cuMemcpyHtoD', staging, src.bytes, src.bytes.length);
    const rows = shape[0], cols = shape.length > 1 ? shape.slice(1).reduce((a, d) => a * d, 1) : 1;
    c.kernels.get('convert', 'convert', `_${from}_to_${sfx(dst.dtype)}`)
      .launch(c.stream, Math.min(8192, Math.ceil((rows * cols) / 256)), 1, 1, 256, 0, dst.ptr, staging, rows, cols, transpose ? 1 : 0);
    c.driver.call('cuStreamSynchronize', c.stream);
  } finally {
    c.driver.call('cuMemFree', staging);
  }
}
