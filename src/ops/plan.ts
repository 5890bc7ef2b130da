// Activation memory plan: buffers whose lifetimes do not overlap share bytes of one arena (the
// ping-pong and shared buffers of FasterTransformer). Lifetimes are the live ranges an OpRecorder found
// in the recorded op sequence (ops/trace.ts).
import { dtypeBytes, numel, type Backend, type DType, type Tensor } from './backend.js';

export interface BufferRequest {
  name: string;
  shape: number[];
  dtype: DType;
  /** op ranges [first, last] (inclusive) in which the buffer holds a live value */
  ranges: [number, number][];
}

export interface PlannedBuffer {
  name: string;
  shape: number[];
  dtype: DType;
  ranges: [number, number][];
  offset: number;
  bytes: number;
}

export interface ArenaPlan {
  buffers: PlannedBuffer[];
  bytes: number;
}

const ALIGN = 256;

export function overlaps(a: [number, number][], b: [number, number][]): boolean {
  return a.some(([f1, l1]) => b.some(([f2, l2]) => f1 <= l2 && f2 <= l1));
}

/** Greedy by size: each buffer, largest first, takes the lowest offset free of every placed buffer it is alive with. */
export function planArena(requests: BufferRequest[]): ArenaPlan {
  const order = requests
    .map((r, index) => ({ ...r, index, offset: 0, bytes: Math.ceil((numel(r.shape) * dtypeBytes(r.dtype)) / ALIGN) * ALIGN }))
    .sort((a, b) => b.bytes - a.bytes || a.index - b.index);
  const placed: typeof order = [];
  for (const buf of order) {
    const clashes = placed.filter((p) => overlaps(p.ranges, buf.ranges)).sort((a, b) => a.offset - b.offset);
    let offset = 0;
    for (const c of clashes) {
      if (offset + buf.bytes <= c.offset) break;
      offset = Math.max(offset, c.offset + c.bytes);
    }
    buf.offset = offset;
    placed.push(buf);
  }
  const bytes = placed.reduce((m, p) => Math.max(m, p.offset + p.bytes), 0);
  placed.sort((a, b) => a.index - b.index);
  return { buffers: placed.map(({ name, shape, dtype, ranges, offset, bytes: b }) => ({ name, shape, dtype, ranges, offset, bytes: b })), bytes };
}

export interface Arena {
  plan: ArenaPlan;
  region: Tensor;
  buffers: Map<string, Tensor>;
}

export function allocateArena(backend: Backend, plan: ArenaPlan): Arena {
  const region = backend.arena(Math.max(plan.bytes, ALIGN));
  const buffers = new Map<string, Tensor>();
  for (const b of plan.buffers) buffers.set(b.name, backend.view(region, b.offset, b.shape, b.dtype));
  return { plan, region, buffers };
}
