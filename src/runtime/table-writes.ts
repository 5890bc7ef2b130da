// Changes to the runtime's per-sequence tables (block tables, request rows, histories, the encoder memory's block
// tables), queued on the host and applied before the next pass that reads them: one upload and one scatter per
// table (Backend.scatterInt) instead of a copy per change. A beam step rewrites every beam's block table and history:
// 128 beam-4 requests made about 900 copies a step, each a driver call of a few microseconds.
// Entries queued twice before a flush would race in the scatter, so a change that overlaps a queued one of the same
// row flushes that table first.
import type { Backend, Tensor } from '../ops/backend.js';

/** (index, value) pairs a flush takes at most; more are flushed as they come */
const CAPACITY = 1 << 15;

interface Queue {
  pairs: Int32Array;
  n: number;
  /** the columns [lo, hi) of each row that hold queued entries; rows holds the rows with any */
  lo: Int32Array;
  hi: Int32Array;
  rows: number[];
}

export class TableWrites {
  private readonly queues = new Map<Tensor, Queue>();
  /** the pairs of a flush on the device (the runtime counts and frees it with its tables) */
  readonly staging: Tensor;

  constructor(private readonly backend: Backend) {
    this.staging = backend.buffer([2 * CAPACITY], 'i32');
  }

  /** Queues t[row, from + i] = values[start + i] for i < n (t a [rows, width] or [rows] table of 32-bit entries). */
  put(t: Tensor, row: number, from: number, values: ArrayLike<number>, start = 0, n = values.length - start): void {
    if (n <= 0) return;
    const width = t.shape.length > 1 ? t.shape[1] : 1;
    if (from < 0 || from + n > width || row < 0 || row >= t.shape[0]) throw new Error(`internal: columns ${from}..${from + n} of row ${row} of a [${t.shape}] table`);
    let q = this.queues.get(t);
    if (!q) {
      q = { pairs: new Int32Array(2 * CAPACITY), n: 0, lo: new Int32Array(t.shape[0]), hi: new Int32Array(t.shape[0]), rows: [] };
      this.queues.set(t, q);
    }
    if (q.hi[row] > q.lo[row] && from < q.hi[row] && from + n > q.lo[row]) this.flushTable(t, q);
    if (n > CAPACITY) {
      this.flushTable(t, q);
      this.backend.writeInt(this.backend.view(t, (row * width + from) * 4, [n], 'i32'), Int32Array.from({ length: n }, (_, i) => values[start + i]), n);
      return;
    }
    if (q.n + n > CAPACITY) this.flushTable(t, q);
    if (q.hi[row] > q.lo[row]) {
      q.lo[row] = Math.min(q.lo[row], from);
      q.hi[row] = Math.max(q.hi[row], from + n);
    } else {
      q.lo[row] = from;
      q.hi[row] = from + n;
      q.rows.push(row);
    }
    const base = row * width + from, p = q.pairs;
    for (let i = 0, o = 2 * q.n; i < n; i++, o += 2) {
      p[o] = base + i;
      p[o + 1] = values[start + i];
    }
    q.n += n;
  }

  /** Applies every queued change (before a pass, a graph launch or a capture: never inside one). */
  flush(): void {
    for (const [t, q] of this.queues) this.flushTable(t, q);
  }

  private flushTable(t: Tensor, q: Queue): void {
    if (q.n === 0) return;
    this.backend.writeInt(this.staging, q.pairs, 2 * q.n);
    this.backend.scatterInt(t, this.staging, q.n);
    q.n = 0;
    for (const r of q.rows) q.lo[r] = q.hi[r] = 0;
    q.rows.length = 0;
  }
}
