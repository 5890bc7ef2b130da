// Device-side timings for the GPU benchmarks: copy bandwidth, decode steps of a runtime (replayed from the captured
// graph, or eagerly op by op for a per-op profile), and the per-op profiler.
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import { koffi, type Handle } from '../src/backends/cuda/driver.js';
import { profileGate } from '../src/backends/cuda/profile.js';
import type { CausalRuntime } from '../src/runtime/causal.js';

/**
 * GPU milliseconds and calls per op of what a backend runs between construction and report(), op by op (no graph
 * replays). Each op's events and launches queue behind a gate kernel (kernels/profile.cu) that the host opens once they
 * are all enqueued, so an op's time is the GPU's alone: without the gate the GPU waits on the host's launches between
 * the events whenever it runs ahead of it, as it does for small ops. A gated op still shows its launch latency, since
 * the GPU idles before it.
 */
export class OpProfiler {
  private readonly events: [string, Handle, Handle][] = [];
  private readonly pinned: Handle;
  private readonly address: number;
  private readonly flag: DataView;
  private value = 0;

  constructor(private readonly b: CudaBackend) {
    const driver = b.ctx.driver;
    this.pinned = driver.handle('cuMemAllocHost', 64);
    this.address = Number(koffi.address(this.pinned));
    this.flag = new DataView(koffi.view(this.pinned, 64));
    this.flag.setUint32(0, 0, true);
    b.setOpHook((name, launch) => this.time(name, launch));
  }

  private time(name: string, launch: () => void): void {
    const { driver, stream } = this.b.ctx;
    const a = driver.handle('cuEventCreate', 0), e = driver.handle('cuEventCreate', 0);
    this.value++;
    // an op that synchronises the stream inside (a GEMM shape's first tuning) finds the gate open after 5 ms
    profileGate(this.b.ctx, this.address, this.value, 5e6);
    try {
      driver.call('cuEventRecord', a, stream);
      launch();
      driver.call('cuEventRecord', e, stream);
    } finally {
      this.flag.setUint32(0, this.value, true);
    }
    this.events.push([name, a, e]);
  }

  /** Milliseconds and calls per op; the backend runs its ops directly (and graphs) again. */
  report(): Record<string, { ms: number; calls: number }> {
    const driver = this.b.ctx.driver;
    this.b.setOpHook(null);
    this.b.synchronize();
    const out: Record<string, { ms: number; calls: number }> = {};
    const ms = [0];
    for (const [name, a, e] of this.events) {
      driver.call('cuEventElapsedTime', ms, a, e);
      const r = (out[name] ??= { ms: 0, calls: 0 });
      r.ms += ms[0];
      r.calls++;
      driver.call('cuEventDestroy', a);
      driver.call('cuEventDestroy', e);
    }
    this.events.length = 0;
    driver.call('cuMemFreeHost', this.pinned);
    return out;
  }
}

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
  const profiler = new OpProfiler(b);
  rt.decode(GREEDY, true);
  return profiler.report();
}
