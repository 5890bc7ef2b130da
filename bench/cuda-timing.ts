// Device-side timings for the GPU benchmarks: copy bandwidth, and replays of a captured decode graph.
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import type { CausalLM } from '../src/models/model.js';

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

/** GPU milliseconds of one replay of the decode graph of `batch` rows, from positions starting at `start`. */
export function replayMs(b: CudaBackend, model: CausalLM, batch: number, start: number, steps: number): number {
  const positions = new Int32Array(batch).fill(start);
  b.writeInt(model.io.positions, positions, batch);
  b.writeInt(model.io.keyLens, positions.map((p) => p + 1), batch);
  const ms = b.timeMs(() => {
    for (let i = 0; i < steps; i++) b.graph(`decode:${batch}`, () => { throw new Error('the decode graph was not captured'); });
  });
  return ms / steps;
}

/** GPU time per op of one decode step run eagerly (not from the graph), from positions starting at `start`. */
export function profileDecode(b: CudaBackend, model: CausalLM, batch: number, start: number): Record<string, { ms: number; calls: number }> {
  const positions = new Int32Array(batch).fill(start);
  b.writeInt(model.io.positions, positions, batch);
  b.writeInt(model.io.keyLens, positions.map((p) => p + 1), batch);
  b.profile();
  model.decode(batch);
  b.sample(model.io.ids, model.io.logits, model.io.sampling, model.io.slots, model.io.positions, batch);
  return b.profileReport();
}
