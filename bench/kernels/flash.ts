// Prompt attention alone on the GPU, against the FLOP roofline: Peregrine's tensor-core kernel (kernels/flash.cu),
// its CUDA-core kernel (attend_prefill of kernels/attention.cu) and PyTorch's scaled_dot_product_attention with the
// flash backend (bench/peers/attention_torch.py), in the same run.
//   npm run bench -- kernels/flash (or attention) [--seqs 512,1024,2048,4096] [--head-dims 64,128] [--causal both|yes|no] [--tokens 16384]
//     [--hidden 2048] [--dtype f16|bf16] [--no-cores] [--no-peers] [--variants flash_prefill64_m2n64s,...]
// As FlashAttention's own benchmark: batch = tokens / seq sequences of equal length, hidden / head size heads, FLOPs =
// 4 seq^2 head_size heads batch (half that when causal). Peregrine reads k and v from its paged cache (blocks of 16,
// in order), written beforehand; the peer takes [batch, heads, seq, head size] tensors.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attendFromRows, attendPromptCores, FLASH_TILES, launchFlash } from '../../src/backends/cuda/attention.js';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import type { AttentionShape, Segments, Tensor } from '../../src/ops/backend.js';
import { ROOT, type BenchArgs, type BenchResult } from '../common.js';
import { RandomWeights } from '../random-weights.js';

const BLOCK = 16;

interface Case { seq: number; D: number; causal: boolean }

export async function attention(args: BenchArgs): Promise<BenchResult> {
  const seqs = args.list('seqs', ['512', '1024', '2048', '4096']).map(Number);
  const dims = args.list('head-dims', ['64', '128']).map(Number);
  const causalArg = args.string('causal') ?? 'both';
  const causals = causalArg === 'both' ? [false, true] : [causalArg === 'yes'];
  const tokens = args.int('tokens', 16384), hidden = args.int('hidden', 2048);
  const dtype = (args.string('dtype') ?? 'f16') as 'f16' | 'bf16';
  const variants = args.list('variants', []);
  const b = new CudaBackend(dtype);
  const rows: Record<string, string | number>[] = [];
  const cases: Case[] = [];
  for (const D of dims) for (const seq of seqs) for (const causal of causals) cases.push({ seq, D, causal });
  for (const c of cases) {
    const setup = prepare(b, c, tokens, hidden, dtype);
    const flops = (4 * setup.batch * c.seq * c.seq * hidden) / (c.causal ? 2 : 1);
    const time = (run: () => void) => {
      run();
      const reps = 10;
      return b.timeMs(() => { for (let i = 0; i < reps; i++) run(); }) / reps;
    };
    const row = (engine: string, ms: number) => rows.push({ engine, 'head size': c.D, seq: c.seq, batch: setup.batch, causal: c.causal ? 'yes' : 'no', ms, 'TFLOP/s': flops / ms / 1e9 });
    const { out, qkv, k, v, tables, slots, keyLens, shape, segments } = setup;
    if (FLASH_TILES[c.D]) {
      row('peregrine tensor cores', time(() => launchFlash(b.ctx, `flash_prefill${c.D}_${dtype}`, FLASH_TILES[c.D], out, qkv, { kCache: k, vCache: v, blockTables: tables, slots }, keyLens, shape, segments)));
      // an encoder's form (Backend.attendEncoder): keys and values read from the qkv rows instead of the paged cache
      row('peregrine tensor cores, keys from rows', time(() => attendFromRows(b.ctx, out, qkv, keyLens, shape, setup.batch * c.seq, segments)));
    }
    for (const name of variants.filter((n) => n.startsWith(`flash_prefill${c.D}_`))) {
      const m = /_m(\d)n(\d+)[qs]$/.exec(name);
      if (!m) throw new Error(`--variants: ${name} is not flash_prefill<D>_m<MT>n<BN><q|s>`);
      row(name, time(() => launchFlash(b.ctx, `${name}_${dtype}`, { mt: Number(m[1]), bn: Number(m[2]) }, out, qkv, { kCache: k, vCache: v, blockTables: tables, slots }, keyLens, shape, segments)));
    }
    if (!args.flag('no-cores') && c.D <= 128) row('peregrine CUDA cores', time(() => attendPromptCores(b.ctx, out, qkv, k, v, tables, slots, keyLens, shape, segments)));
    for (const t of [out, qkv, k, v, tables, slots, keyLens, segments.table]) b.free(t);
  }
  const device = b.device.name;
  b.dispose();
  if (!args.flag('no-peers')) rows.push(...peers(cases, tokens, hidden, dtype));
  for (const r of rows) {
    const ours = rows.find((x) => x.engine === 'peregrine tensor cores' && x['head size'] === r['head size'] && x.seq === r.seq && x.causal === r.causal);
    r['peregrine speed-up'] = ours && r !== ours ? `${((r.ms as number) / (ours.ms as number)).toFixed(2)}x` : '';
  }
  return {
    name: 'attention',
    config: { device, dtype, tokens, hidden, blockSize: BLOCK, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim() },
    rows,
    notes: ['ms: GPU time per call, mean of 10 after one warm-up; TFLOP/s = 4 seq^2 hidden batch (/ 2 causal) / time. Speed-up: the row\'s time over the tensor-core kernel\'s.'],
  };
}

/** Random q, k, v for batch = tokens / seq sequences, k and v written into a paged cache, segments one per sequence. */
function prepare(b: CudaBackend, c: Case, tokens: number, hidden: number, dtype: 'f16' | 'bf16') {
  const batch = Math.max(1, Math.floor(tokens / c.seq)), n = batch * c.seq, heads = hidden / c.D;
  if (!Number.isInteger(heads)) throw new Error(`--hidden ${hidden} is not a multiple of head size ${c.D}`);
  const perSeq = Math.ceil(c.seq / BLOCK);
  const stored = dtype === 'bf16' ? 'BF16' : 'F16';
  const qkv = b.weight({ bytes: new RandomWeights([{ name: 'qkv', shape: [n, 3 * hidden], dtype: stored }]).readBytes('qkv'), dtype: stored }, [n, 3 * hidden]);
  const k = b.buffer([batch * perSeq, BLOCK, hidden], b.activationDtype), v = b.buffer([batch * perSeq, BLOCK, hidden], b.activationDtype);
  const tables = b.buffer([batch, perSeq], 'i32');
  b.writeInt(tables, Int32Array.from({ length: batch * perSeq }, (_, i) => i), batch * perSeq);
  const int = (x: Int32Array) => {
    const t = b.buffer([x.length], 'i32');
    b.writeInt(t, x, x.length);
    return t;
  };
  const slots = int(Int32Array.from({ length: n }, (_, i) => Math.floor(i / c.seq)));
  const positions = int(Int32Array.from({ length: n }, (_, i) => i % c.seq));
  const keyLens = int(Int32Array.from({ length: n }, (_, i) => (c.causal ? (i % c.seq) + 1 : c.seq)));
  b.writeKV(qkv, k, v, tables, slots, positions, n);
  b.free(positions);
  const segments: Segments = { table: int(Int32Array.from({ length: 3 * batch }, (_, i) => (i % 3 === 0 ? (i / 3) * c.seq : i % 3 === 1 ? c.seq : 0))), count: batch, longest: c.seq };
  const shape: AttentionShape = { heads, kvHeads: heads, headDim: c.D, scale: 1 / Math.sqrt(c.D), window: 0 };
  const out: Tensor = b.buffer([n, hidden], b.activationDtype);
  return { batch, out, qkv, k, v, tables, slots, keyLens, shape, segments };
}

function peers(cases: Case[], tokens: number, hidden: number, dtype: string): Record<string, string | number>[] {
  const script = join(ROOT, 'bench', 'peers', 'attention_torch.py');
  if (!existsSync(script)) return [];
  const out = join(tmpdir(), `peregrine-attention-peers-${process.pid}.json`);
  try {
    execFileSync('python3', [script, '--cases', cases.map((c) => `${c.D}:${c.seq}:${c.causal ? 1 : 0}`).join(','), '--tokens', String(tokens),
      '--hidden', String(hidden), '--dtype', dtype, '--out', out], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 300_000 });
  } catch (err) {
    process.stderr.write(`peers failed: ${(err as Error).message}\n`);
  }
  if (!existsSync(out)) return [];
  const data = JSON.parse(readFileSync(out, 'utf8')) as { results: { engine: string; D: number; seq: number; batch: number; causal: boolean; ms: number; tflops: number; error?: string }[] };
  return data.results.map((r) => ({ engine: r.engine + (r.error ? ` (error: ${r.error})` : ''), 'head size': r.D, seq: r.seq, batch: r.batch, causal: r.causal ? 'yes' : 'no', ms: r.ms, 'TFLOP/s': r.tflops }));
}
