// Launcher for kernels/profile.cu: the gate the per-op profiler (bench/cuda-timing.ts) queues each op behind.
import type { CudaContext } from './context.js';

/** Holds the stream until the host writes `value` (or more) at `flag`, pinned host memory, or `timeoutNs` pass
 * (kernels/profile.cu; the per-op profile of bench/cuda-timing.ts). */
export function profileGate(c: CudaContext, flag: number, value: number, timeoutNs: number): void {
  c.kernels.get('profile', 'profile_gate').launch(c.stream, 1, 1, 1, 1, 0, flag, value, timeoutNs);
}
