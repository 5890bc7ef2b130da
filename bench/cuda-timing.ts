// Device-side timings for the GPU benchmarks: copy bandwidth, and decode steps of a runtime (replayed from
// the captured graph, or eagerly op by op for a per-op profile).
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import type { CausalRuntime } from '../src/runtime/causal.js';

/** Device-to-device copy bandwidth in GB/s, counting bytes read and written (1 GiB copies, median of 10). */
export function copyBandwidth(b: CudaBackend): number {
  const bytes = 2 ** 30;
  const src = b.buffer([bytes / 4], 'f32'), dst = b.buffer([bytes / 4], 'f32');
  const times: number[] = [];
  for (let i = 0; i < 11; i++) {
    const ms = b.timeMs(() => b.copy(dst, src, bytes));
    if (i > 0) times.push(ms);
  }
  b.free(src);
  b.free(dst);
  times.sort((x, y) => x - y);
  return (2 * bytes) / (times[5] * 1e6);
}

const GREEDY = { process: false, logprobs: false, candidates: false };

/** Decode rows for `batch` sequences in slots 0.. (whose request rows a finished greedy run left), at `start`. */
function rows(rt: CausalRuntime, batch: number, start: number): void {
  rt.setDecodeRows({
    n: batch, slots: Int32Array.from({ length: batch }, (_, i) => i), ids: new Int32Array(batch), positions: new Int32Array(batch).fill(start),
  });
}

/** GPU milliseconds of one decode step of `batch` rows replayed from its graph (which must have been captured). */
export function replayMs(b: CudaBackend, rt: CausalRuntime, batch: number, start: number, steps: number): number {
  rows(rt, batch, start);
  if (b.graphNodes(rt.graphKey(batch, GREEDY)) === 0) throw new Error('the decode graph was not captured');
  return b.timeMs(() => {
    for (let i = 0; i < steps; i++) rt.decode(GREEDY);
  }) / steps;
}

/** GPU time per op of one decode step run eagerly (not from the graph). */
export function profileDecode(b: CudaBackend, rt: CausalRuntime, batch: number, start: number): Record<string, { ms: number; calls: number }> {
  rows(rt, batch, start);
  b.profile();
  rt.decode(GREEDY, true);
  return b.profileReport();
}
