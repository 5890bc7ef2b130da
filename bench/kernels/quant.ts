// The quantized linear layers alone on the GPU: each decode matrix of Llama-3-8B (or GPT-2 1.5B, whose small layers
// show each launch's fixed cost) in fp16 and in every quantized format,
// timed as `backend.linear` (x's int8 quantization included where the path has one), and their weight bytes per
// second against the device's copy bandwidth.
//   npm run bench -- kernels/quant (or qgemv) [--model llama-8B|gpt2-1.5B] [--formats fp16,int8,int4,fp8,w8a8]
//     [--batches 1,4,64] [--out-dir DIR]
// Each timing replays a captured graph of linear layers over enough copies of the weight (different memory, random
// bytes) that the L2 cache holds none of them from one use to the next: GPU time per layer, median of 5 replays.
import { randomFillSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import type { CudaTensor } from '../../src/backends/cuda/tensor.js';
import { quantizeTarget } from '../../src/loaders/quantize.js';
import { w8a8Bytes } from '../../src/loaders/w8a8.js';
import type { Tensor } from '../../src/ops/backend.js';
import type { BenchArgs, BenchResult } from '../common.js';
import { copyBandwidth } from '../cuda-timing.js';

/** Each model's decode matrices [N, K]: Llama-3-8B's q|k|v, o, gate|up, down; GPT-2 1.5B's qkv, o, fc, proj. */
const SHAPES: Record<string, [string, number, number][]> = {
  'llama-8B': [['qkv', 6144, 4096], ['o', 4096, 4096], ['gate|up', 28672, 4096], ['down', 4096, 14336]],
  'gpt2-1.5B': [['qkv', 4800, 1600], ['o', 1600, 1600], ['fc', 6400, 1600], ['proj', 1600, 6400]],
};
const FORMATS = { fp16: null, int8: 'Q8_0', int4: 'Q4_G128', fp8: 'FP8', w8a8: 'W8A8' } as const;
type Format = keyof typeof FORMATS;

/** Random f16 bits of magnitude 2^-7 .. 2^-6, either sign. */
function randomF16(n: number): Uint8Array {
  const h = randomFillSync(new Uint16Array(n));
  for (let i = 0; i < n; i++) h[i] = (h[i] & 0x83ff) | 0x2000;
  return new Uint8Array(h.buffer);
}

function makeWeight(b: CudaBackend, format: Format, N: number, K: number): Tensor {
  if (format === 'w8a8') {
    const q = randomFillSync(new Int8Array(N * K));
    return b.weight({ bytes: w8a8Bytes(q, new Float32Array(N).fill(0.01), new Float32Array(K).fill(1)), dtype: 'W8A8' }, [N, K], false, true);
  }
  const f16 = { bytes: randomF16(N * K), dtype: 'F16' as const };
  const type = FORMATS[format];
  // int4 in groups of 64 where 128 does not divide the inputs (GPT-2 1.5B's 1600), as --quantize int4 picks them
  return type ? b.quantizedWeight(f16, [N, K], false, quantizeTarget([N, K], type, format)) : b.weight(f16, [N, K]);
}

/** GPU ms per layer: `reps` layers over `copies` weights, captured once, median of 5 replays. */
function timeLayer(b: CudaBackend, ws: Tensor[], batch: number, key: string): number {
  const [N, K] = ws[0].shape;
  const x = b.buffer([batch, K], 'f16'), out = b.buffer([batch, N], 'f16');
  const reps = Math.max(ws.length, 16);
  const body = () => { for (let i = 0; i < reps; i++) b.linear(out, x, ws[i % ws.length], null, 'none', batch); };
  b.graph(key, body);
  b.graph(key, body);
  const times = Array.from({ length: 5 }, () => b.timeMs(() => b.graph(key, body)) / reps).sort((p, q) => p - q);
  b.free(x);
  b.free(out);
  return times[2];
}

export async function qgemv(args: BenchArgs): Promise<BenchResult> {
  const model = args.string('model') ?? 'llama-8B';
  if (!(model in SHAPES)) throw new Error(`unknown --model ${model}; ${Object.keys(SHAPES).join(', ')}`);
  const formats = args.list('formats', Object.keys(FORMATS)) as Format[];
  for (const f of formats) if (!(f in FORMATS)) throw new Error(`unknown format ${f}; ${Object.keys(FORMATS).join(', ')}`);
  const batches = args.list('batches', ['1', '4']).map(Number);
  const b = new CudaBackend('f16');
  const bandwidth = copyBandwidth(b);
  const rows: Record<string, string | number>[] = [];
  const fp16Us = new Map<string, number>();
  for (const [name, N, K] of SHAPES[model]) {
    for (const format of formats) {
      const first = makeWeight(b, format, N, K);
      const bytes = (first as CudaTensor).bytes;
      // copies past the L2 (50 MiB on an H100): at least 256 MiB of weights in turn
      const ws = [first, ...Array.from({ length: Math.min(15, Math.ceil(2 ** 28 / bytes) - 1) }, () => makeWeight(b, format, N, K))];
      for (const batch of batches) {
        const us = timeLayer(b, ws, batch, `qgemv ${name} ${format} ${batch}`) * 1000;
        if (format === 'fp16') fp16Us.set(`${name} ${batch}`, us);
        const base = fp16Us.get(`${name} ${batch}`);
        rows.push({
          matrix: `${name} [${N}, ${K}]`, format, batch, 'us/layer': us, 'weight GB/s': bytes / (us * 1e3), 'share of copy bandwidth': `${((100 * bytes) / (us * 1e3) / bandwidth).toFixed(0)}%`,
          'speed-up vs fp16': base && format !== 'fp16' ? `${(base / us).toFixed(2)}x` : '',
        });
      }
    }
  }
  const result: BenchResult = {
    name: 'qgemv',
    config: { model, device: b.device.name, copyBandwidthGBs: bandwidth, cublasLt: b.ctx.blas.version, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim() },
    rows,
    notes: [
      'int8: Q8_0 (int8, an f16 scale per 32); int4: grouped int4 (an f16 scale and a u8 zero per 128, per 64 where 128 does not divide the inputs: AWQ/GPTQ and --quantize int4); fp8: E4M3, an f32 scale per row (past one row x rounded to E4M3 per token, cuBLASLt FP8 GEMM); w8a8: SmoothQuant int8 rows, x quantized per token.',
      'weight GB/s: the weight\'s bytes (quants and scales) per layer time; x\'s quantization to int8 is inside the time.',
    ],
  };
  b.dispose();
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'qgemv.json'), JSON.stringify(result, null, 1));
  }
  return result;
}
