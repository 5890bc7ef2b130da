// The CPU backend's attention (src/backends/cpu/attention.ts attend) alone, over a paged cache of random keys and values:
// ms per call for the last `rows` query rows of a sequence of `keys` keys, in three shapes.
//   npm run bench -- cpu-attention [--ms 1500]
import { attend, type Paged, type Queries } from '../src/backends/cpu/attention.js';
import type { AttentionShape } from '../src/ops/backend.js';
import type { BenchArgs, BenchResult } from './common.js';

const SHAPES = [
  { name: 'stories260K (8 heads of 8 over 4 KV heads)', heads: 8, kvHeads: 4, headDim: 8, keys: 511, rows: 256 },
  { name: 'GPT-2 124M (12 heads of 64)', heads: 12, kvHeads: 12, headDim: 64, keys: 1024, rows: 64 },
  { name: 'grouped 32 heads of 64 over 8 KV heads', heads: 32, kvHeads: 8, headDim: 64, keys: 512, rows: 32 },
];

/** A counter-based fill in [-0.5, 0.5), the same every run. */
function fill(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (((i + 1) * 2654435761 + seed * 40503) % 1000003) / 1000003 - 0.5);
}

export async function cpuAttention(args: BenchArgs): Promise<BenchResult> {
  const budget = args.int('ms', 1500);
  const rows = SHAPES.map((s) => {
    const blockSize = 16, blocks = Math.ceil(s.keys / blockSize) + 1, width = s.kvHeads * s.headDim;
    // blocks in a scattered order, as a pool hands them out
    const c: Paged = { k: fill(blocks * blockSize * width, 1), v: fill(blocks * blockSize * width, 2), blockSize, width, maxBlocks: blocks,
      tables: Int32Array.from({ length: blocks }, (_, i) => (i * 7) % blocks) };
    const rowWidth = (s.heads + 2 * s.kvHeads) * s.headDim;
    const q = fill(s.rows * rowWidth, 3);
    const queries: Queries = { rowWidth, slots: new Int32Array(s.rows), keyLens: Int32Array.from({ length: s.rows }, (_, t) => s.keys - s.rows + 1 + t), bySlot: false, bias: null };
    const shape: AttentionShape = { heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim, scale: 1 / Math.sqrt(s.headDim), window: 0 };
    const out = new Float32Array(s.rows * s.heads * s.headDim), scores = new Float32Array(s.keys), rowsOf = new Int32Array(s.keys);
    const sums = new Float64Array(s.headDim);
    const call = () => attend(c, out, q, queries, shape, s.rows, scores, rowsOf, sums);
    call(); // warm-up: the JIT
    const t0 = performance.now();
    let calls = 0;
    while (performance.now() - t0 < budget) {
      call();
      calls++;
    }
    return { shape: s.name, keys: s.keys, 'query rows': s.rows, 'ms per call': (performance.now() - t0) / calls };
  });
  return { name: 'cpu-attention', config: { budgetMs: budget, command: `npm run bench -- cpu-attention ${process.argv.slice(3).join(' ')}`.trim() }, rows };
}
