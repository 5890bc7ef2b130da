// Recording a forward pass to find each activation buffer's lifetime. A model asks for buffers by name
// and calls ops on them; while planning, the ops go to a recorder that notes, per op, which buffers it
// reads and which it writes (OP_WRITES). A buffer is live from an op that writes it without reading it
// to the last op that reads that value; buffers whose live ranges never meet can share bytes.
import type { Backend, Tensor } from './backend.js';

type OpName = Exclude<keyof Backend, 'name' | 'activationDtype' | 'batchInvariant' | 'parallel' | 'pipeline' | 'weight' | 'quantizedWeight' | 'arena' | 'view' | 'buffer' | 'free' | 'writeInt' | 'scatterInt'
  | 'readFloat' | 'readInt' | 'readBlocks' | 'writeBlocks' | 'graph' | 'invalidateGraphs' | 'dispose'>;

/** The arguments each op writes (whole structs: every tensor inside); every other argument is read. */
export const OP_WRITES: Record<OpName, number[]> = {
  embed: [0],
  embedSlice: [0],
  layerNorm: [0],
  addBiasResidualLayerNorm: [0, 1],
  linear: [0],
  normLinear: [0, 7],
  gatedActivation: [0],
  rotary: [0],
  linearResidual: [0, 5],
  gatedLinearResidual: [0, 6, 7],
  writeKV: [1, 2],
  attend: [0],
  attendEncoder: [0, 2, 3],
  decodeAttention: [0, 2, 3],
  crossAttention: [0],
  allReduce: [0],
  allGather: [0],
  sendRows: [],
  recvRows: [0],
  copyBlocks: [0],
  gatherRows: [0],
  meanPool: [0],
  processLogits: [0],
  selectCandidates: [0, 5],
  sample: [0, 4],
  logprobs: [0, 6],
  advance: [0, 1],
};

/** Written arguments that the op also reads (updates in place: the value before the op stays live into it). */
const UPDATES: Partial<Record<OpName, number[]>> = {
  linearResidual: [0], gatedLinearResidual: [0], rotary: [0], writeKV: [1, 2], decodeAttention: [2, 3], allReduce: [0], copyBlocks: [0], sample: [4],
  advance: [0, 1],
};

export interface Access {
  op: number;
  read: boolean;
  write: boolean;
}

function isTensor(x: unknown): x is Tensor {
  return typeof x === 'object' && x !== null && Array.isArray((x as Tensor).shape) && typeof (x as Tensor).dtype === 'string';
}

function tensorsIn(x: unknown, out: Tensor[]): void {
  if (isTensor(x)) out.push(x);
  else if (typeof x === 'object' && x !== null) for (const v of Object.values(x)) tensorsIn(v, out);
}

/** Records the ops called through `ops`; `accesses` holds every tensor's accesses in op order. */
export class OpRecorder {
  readonly accesses = new Map<Tensor, Access[]>();
  ops = 0;
  readonly backend: Backend;

  constructor(base: Backend) {
    const recorder = this;
    this.backend = new Proxy(base, {
      get(target, prop, receiver) {
        if (typeof prop !== 'string' || !(prop in OP_WRITES)) return Reflect.get(target, prop, receiver);
        const op = prop as OpName;
        return (...args: unknown[]) => recorder.record(op, args);
      },
    });
  }

  private record(op: OpName, args: unknown[]): void {
    const index = this.ops++;
    const writes = OP_WRITES[op], updates = UPDATES[op] ?? [];
    const seen = new Map<Tensor, Access>();
    args.forEach((arg, i) => {
      const ts: Tensor[] = [];
      tensorsIn(arg, ts);
      const write = writes.includes(i);
      for (const t of ts) {
        const a = seen.get(t) ?? { op: index, read: false, write: false };
        if (write) {
          a.write = true;
          if (updates.includes(i)) a.read = true;
        } else {
          a.read = true;
        }
        seen.set(t, a);
      }
    });
    for (const [t, a] of seen) {
      let list = this.accesses.get(t);
      if (!list) this.accesses.set(t, (list = []));
      list.push(a);
    }
  }
}

/**
 * Live ranges [first, last] of a buffer from its accesses: a range opens at a write that does not read
 * (or at op 0 when the first access reads: the value came from before) and closes at the last access
 * before the next such write.
 */
export function liveRanges(accesses: Access[]): [number, number][] {
  const ranges: [number, number][] = [];
  for (const a of accesses) {
    const opens = a.write && !a.read;
    if (ranges.length === 0) ranges.push([opens ? a.op : 0, a.op]);
    else if (opens) ranges.push([a.op, a.op]);
    else ranges[ranges.length - 1][1] = a.op;
  }
  return ranges;
}
