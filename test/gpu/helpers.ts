// GPU test helpers: a CUDA backend when the machine has one (tests skip with a message otherwise), and
// moving float data between the host, the CPU reference backend and the GPU.
import { CpuBackend } from '../../src/backends/cpu/backend.js';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { f32ToBf16Bits, f32ToF16Bits, toFloat32 } from '../../src/loaders/dtypes.js';
import { PeregrineError } from '../../src/errors.js';
import type { DType, Tensor } from '../../src/ops/backend.js';
import { seededRandom } from '../../src/ops/rng.js';

let probed: string | null = null;

/** null when a GPU is usable, else why not (for t.skip). */
export function noGpu(): string | null {
  if (probed !== null) return probed || null;
  try {
    new CudaBackend('f32').dispose();
    probed = '';
  } catch (err) {
    if (!(err instanceof PeregrineError)) throw err;
    probed = `no usable GPU here: ${err.message}`;
    process.stderr.write(`# skipping GPU tests: ${probed}\n`);
  }
  return probed || null;
}

export const cpu = new CpuBackend();

const rand = seededRandom(1234);
export function randn(n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

/** The values as the dtype stores them (what the GPU sees), widened back to fp32. */
export function rounded(x: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'f32') return x;
  const bits = Uint16Array.from(x, dtype === 'f16' ? f32ToF16Bits : f32ToBf16Bits);
  return toFloat32(new Uint8Array(bits.buffer), dtype === 'f16' ? 'F16' : 'BF16');
}

/** A tensor on `b` holding fp32 values `x` (converted to the backend's dtype on the GPU). */
export function put(b: CpuBackend | CudaBackend, x: Float32Array, shape: number[]): Tensor {
  return b.weight({ bytes: new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength)), dtype: 'F32' }, shape);
}

export function putInt(b: CpuBackend | CudaBackend, x: Int32Array): Tensor {
  const t = b.buffer([x.length], 'i32');
  b.writeInt(t, x, x.length);
  return t;
}

export function get(b: CpuBackend | CudaBackend, t: Tensor): Float32Array {
  return b.readFloat(t, t.shape.reduce((a, d) => a * d, 1)).slice();
}

/** Relative tolerance per compute dtype for one op (fp32 math; rounding of the output dominates). */
export const TOL: Record<string, number> = { f32: 2e-5, f16: 4e-3, bf16: 3e-2 };
