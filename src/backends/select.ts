// Choosing the backend for --device cpu|cuda|auto and --dtype. Each backend is imported when chosen: the
// CUDA backend (koffi, the driver and cuBLASLt bindings) costs a CPU run nothing.
import { existsSync } from 'node:fs';
import { fail, PeregrineError } from '../errors.js';
import type { Backend } from '../ops/backend.js';
import type { NetHandle } from './cpu/net-group.js';
import type { GroupHandle } from './cpu/thread-group.js';

export type Device = 'cpu' | 'cuda' | 'auto';
export type FloatDType = 'f32' | 'f16' | 'bf16';

export const DEVICES: Device[] = ['cpu', 'cuda', 'auto'];
export const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];

/**
 * cpu: the reference backend, which computes in f32 whatever dtype is asked for (weights stored f16 or
 * bf16 are widened at load; `notice` is told when a dtype is set aside). cuda: the GPU, in f16 unless a
 * dtype is given. auto: the GPU when a driver, a device and built kernels are there, else the CPU;
 * PEREGRINE_DEVICE sets what auto means. batchInvariant: every row computed in one order whatever the batch
 * (the CPU always is; on the GPU it costs prompt throughput, see kernels/gemv.cu).
 */
export interface BackendOptions {
  device?: Device;
  dtype?: FloatDType;
  notice?: (message: string) => void;
  batchInvariant?: boolean;
  /**
   * rank `rank` of a tensor- and/or pipeline-parallel group of threads of this process (src/backends/cpu/thread-group.ts),
   * or of processes (net-group.ts); CPU only
   */
  tensorParallel?: { group: GroupHandle | NetHandle; rank: number };
}

export async function createBackend({ device = 'auto', dtype, notice, batchInvariant = false, tensorParallel }: BackendOptions = {}): Promise<Backend> {
  if (dtype !== undefined && !DTYPES.includes(dtype)) fail('bad-argument', `unknown dtype ${JSON.stringify(dtype)}; use f32, f16 or bf16`);
  const env = process.env.PEREGRINE_DEVICE;
  if (env !== undefined && env !== '' && !DEVICES.includes(env as Device)) {
    fail('bad-argument', `PEREGRINE_DEVICE=${JSON.stringify(env)} is not a device; set it to cpu, cuda or auto, or unset it`);
  }
  if (device === 'auto' && (env === 'cpu' || env === 'cuda')) device = env;
  const cpu = (): Promise<Backend> => {
    if (dtype !== undefined && dtype !== 'f32') notice?.(`the CPU computes in f32; --dtype ${dtype} applies on the GPU`);
    return cpuBackend(tensorParallel);
  };
  if (tensorParallel) checkParallelDevice(device);
  switch (device) {
    case 'cpu':
      return cpu();
    case 'cuda':
      return cudaBackend(dtype ?? 'f16', batchInvariant);
    case 'auto':
      if (!mayHaveNvidiaDriver()) return cpu();
      try {
        return await cudaBackend(dtype ?? 'f16', batchInvariant);
      } catch (err) {
        if (!(err instanceof PeregrineError) || err.code !== 'device') throw err;
        return cpu();
      }
    default:
      return fail('bad-argument', `unknown device ${JSON.stringify(device)}; use cpu, cuda or auto`);
  }
}

/** Tensor and pipeline parallelism run on the CPU backend only, until NCCL drives GPUs. */
export function checkParallelDevice(device: Device): void {
  if (device !== 'cpu') {
    fail('unsupported-config', `tensor and pipeline parallelism run on the CPU backend only for now (device cpu, got ${device}); on GPUs they need NCCL, which Peregrine does not drive yet`);
  }
}

async function cpuBackend(tensorParallel?: BackendOptions['tensorParallel']): Promise<Backend> {
  const { CpuBackend } = await import('./cpu/backend.js');
  if (!tensorParallel) return new CpuBackend();
  const { group, rank } = tensorParallel;
  if ('kind' in group && group.kind === 'net') {
    const { NetGroup } = await import('./cpu/net-group.js');
    return new CpuBackend(new NetGroup(group, rank));
  }
  const { ThreadGroup } = await import('./cpu/thread-group.js');
  return new CpuBackend(new ThreadGroup(group, rank));
}

async function cudaBackend(dtype: FloatDType, batchInvariant: boolean): Promise<Backend> {
  const { CudaBackend } = await import('./cuda/backend.js');
  return new CudaBackend(dtype, batchInvariant);
}

/**
 * False where no NVIDIA driver can work: on Linux the driver needs /dev/nvidiactl (or, under WSL, /dev/dxg).
 * Elsewhere, true: the CUDA backend is tried.
 */
function mayHaveNvidiaDriver(): boolean {
  return process.platform !== 'linux' || existsSync('/dev/nvidiactl') || existsSync('/dev/dxg');
}
