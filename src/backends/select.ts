// Choosing the backend for --device cpu|cuda|auto.
import { fail } from '../errors.js';
import type { Backend } from '../ops/backend.js';
import { CpuBackend } from './cpu/backend.js';

export type Device = 'cpu' | 'cuda' | 'auto';

export const DEVICES: Device[] = ['cpu', 'cuda', 'auto'];

export function createBackend(device: Device = 'auto'): Backend {
  switch (device) {
    case 'cpu':
    case 'auto':
      // 'auto' picks CUDA once that backend exists; until then the CPU is the only one
      return new CpuBackend();
    case 'cuda':
      return fail('device', 'the CUDA backend is not built yet in this version of Peregrine; use --device cpu');
    default:
      return fail('bad-argument', `unknown device ${JSON.stringify(device)}; use cpu, cuda or auto`);
  }
}
