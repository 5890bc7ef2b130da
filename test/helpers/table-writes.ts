// A script of table changes through TableWrites, with the table it must leave (a plain array kept alongside).
import type { Backend } from '../../src/ops/backend.js';
import { seededRandom } from '../../src/ops/rng.js';
import { TableWrites } from '../../src/runtime/table-writes.js';

/**
 * `before`: the tables after a few changes of distinct rows, not yet flushed (all zeros); `after`: after every change
 * (overlapping ones, whole rows past a flush's capacity, f32 bits in a 1-D table) and a flush; `want`: what they must hold.
 */
export function tableScript(b: Backend): { before: Int32Array; after: Int32Array; want: Int32Array } {
  const rows = 40, width = 1000;
  const table = b.buffer([rows, width], 'i32'), flat = b.buffer([rows], 'f32'), flatBits = b.view(flat, 0, [rows], 'i32');
  b.writeInt(table, new Int32Array(rows * width), rows * width);
  b.writeInt(flatBits, new Int32Array(rows), rows);
  const want = new Int32Array(rows * width + rows);
  const writes = new TableWrites(b);
  const rand = seededRandom(3);
  const int = (n: number) => Math.floor(rand() * n);
  let value = 1;
  const put = (row: number, from: number, n: number) => {
    const values = Array.from({ length: n + 3 }, () => value++);
    // from an offset into the values, as setHistory takes a sequence's tokens from a position on
    writes.put(table, row, from, values, 3, n);
    want.set(values.slice(3), row * width + from);
  };
  const read = () => {
    const out = new Int32Array(rows * width + rows);
    out.set(b.readInt(table, rows * width));
    out.set(b.readInt(flatBits, rows), rows * width);
    return out;
  };
  for (let r = 0; r < 10; r++) put(r, 10 * r, 5 + r);
  const before = read();
  // overlapping changes (the later must win), then whole rows: more entries than one flush takes
  for (let i = 0; i < 400; i++) {
    const row = int(rows), from = int(width);
    put(row, from, 1 + int(Math.min(width - from, 40)));
  }
  for (let r = 0; r < rows; r++) put(r, 0, width);
  for (let i = 0; i < 100; i++) put(int(rows), int(width - 1), 1);
  for (let r = 0; r < rows; r += 3) {
    const bits = new Int32Array(new Float32Array([r / 7]).buffer);
    writes.put(flat, r, 0, bits);
    want[rows * width + r] = bits[0];
  }
  writes.flush();
  const after = read();
  for (const t of [table, flat, writes.staging]) b.free(t);
  return { before, after, want };
}
