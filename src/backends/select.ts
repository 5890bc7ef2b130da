// Choosing the backend for --device cpu|cuda|auto and --dtype.
import { fail, PeregrineError } from '../errors.js';
import type { Backend } from '../ops/backend.js';
import { CpuBackend } from './cpu/backend.js';
import { CudaBackend } from './cuda/backend.js';

export type Device = 'cpu' | 'cuda' | 'auto';
export type FloatDType = 'f32' | 'f16' | 'bf16';

export const DEVICES: Device[] = ['cpu', 'cuda', 'auto'];
export const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];

/**
 * cpu: the reference backend (fp32). cuda: the GPU (fp16 unless a dtype is given). auto: the GPU when a
 * driver, a device and built kernels are there, else the CPU; PEREGRINE_DEVICE sets what auto means.
 */
export function createBackend(device: Device = 'auto', dtype?: FloatDType): Backend {
  if (dtype !== undefined && !DTYPES.includes(dtype)) fail('bad-argument', `unknown dtype ${JSON.stringify(dtype)}; use f32, f16 or bf16`);
  const env = process.env.PEREGRINE_DEVICE;
  if (device === 'auto' && (env === 'cpu' || env === 'cuda')) device = env;
  switch (device) {
    case 'cpu':
      if (dtype && dtype !== 'f32') fail('bad-argument', `the CPU backend computes in fp32; --dtype ${dtype} needs --device cuda`);
      return new CpuBackend();
    case 'cuda':
      return new CudaBackend(dtype ?? 'f16');
    case 'auto':
      try {
        return new CudaBackend(dtype ?? 'f16');
      } catch (err) {
        if (!(err instanceof PeregrineError) || err.code !== 'device') throw err;
        if (dtype && dtype !== 'f32') throw err;
        return new CpuBackend();
      }
    default:
      return fail('bad-argument', `unknown device ${JSON.stringify(device)}; use cpu, cuda or auto`);
  }
}
