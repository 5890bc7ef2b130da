// Activation memory plan: buffers whose lifetimes do not overlap share bytes of one arena
// (the ping-pong and shared buffers of FasterTransformer). Lifetimes are steps of one layer's
// op sequence; a buffer that lives across layers spans every step.
import { dtypeBytes, numel, type Backend, type DType, type Tensor } from './backend.js';

export interface BufferRequest {
  name: string;
  shape: number[];
  dtype: DType;
  /** first and last op step (inclusive) that touch the buffer */
  first: number;
  last: number;
}

export interface PlannedBuffer extends BufferRequest {
  offset: number;
  bytes: number;
}

export interface ArenaPlan {
  buffers: PlannedBuffer[];
  bytes: number;
}

const ALIGN = 256;

/** Greedy by size: each buffer, largest first, takes the lowest offset free of every placed buffer it is alive with. */
export function planArena(requests: BufferRequest[]): ArenaPlan {
  const order = requests
    .map((r) => ({ ...r, offset: 0, bytes: Math.ceil((numel(r.shape) * dtypeBytes(r.dtype)) / ALIGN) * ALIGN }))
    .sort((a, b) => b.bytes - a.bytes || a.first - b.first);
  const placed: PlannedBuffer[] = [];
  for (const buf of order) {
    const clashes = placed
      .filter((p) => p.first <= buf.last && buf.first <= p.last)
      .sort((a, b) => a.offset - b.offset);
    let offset = 0;
    for (const c of clashes) {
      if (offset + buf.bytes <= c.offset) break;
      offset = Math.max(offset, c.offset + c.bytes);
    }
    buf.offset = offset;
    placed.push(buf);
  }
  const bytes = placed.reduce((m, p) => Math.max(m, p.offset + p.bytes), 0);
  const byName = new Map(requests.map((r, i) => [r.name, i]));
  placed.sort((a, b) => byName.get(a.name)! - byName.get(b.name)!);
  return { buffers: placed, bytes };
}

export interface Arena {
  plan: ArenaPlan;
  region: Tensor;
  buffers: Record<string, Tensor>;
}

export function allocateArena(backend: Backend, plan: ArenaPlan): Arena {
  const region = backend.arena(Math.max(plan.bytes, ALIGN));
  const buffers: Record<string, Tensor> = {};
  for (const b of plan.buffers) buffers[b.name] = backend.view(region, b.offset, b.shape, b.dtype);
  return { plan, region, buffers };
}
