// npm run bench -- kernels [--families a,b] [--dtype f16|bf16]: every kernel family's micro-benchmark in one run, each
// op at each shape against the device's measured roofline (harness.ts says how it is timed). Prompt attention on
// tensor cores and the quantized linear layers have their own, with peers: `kernels/flash` and `kernels/quant`.
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import type { BenchArgs, BenchResult } from '../common.js';
import { copyBandwidth } from '../cuda-timing.js';
import { attention } from './attention.js';
import { gemv } from './gemv.js';
import { gemmRate, Tensors, timeCase, type Family } from './harness.js';
import { activation, layernorm } from './norms.js';
import { embedding, rotary, rows } from './rows.js';
import { sampling } from './sampling.js';

/** family (kernels/<family>.cu) -> its cases */
export const FAMILIES: Record<string, Family> = { layernorm, activation, embedding, rotary, rows, gemv, attention, sampling };

/** The bench of the named families (all when none are named on the command line). */
export function kernelBench(fixed?: string): (args: BenchArgs) => Promise<BenchResult> {
  return async (args) => {
    const names = fixed ? [fixed] : args.list('families', Object.keys(FAMILIES));
    for (const n of names) if (!(n in FAMILIES)) throw new Error(`--families: no kernel family ${n}; ${Object.keys(FAMILIES).join(', ')}`);
    const dtype = args.string('dtype') ?? 'f16';
    if (dtype !== 'f16' && dtype !== 'bf16') throw new Error(`--dtype ${dtype}: f16 or bf16`);
    const b = new CudaBackend(dtype);
    const bandwidth = copyBandwidth(b), rate = gemmRate(b);
    const t = new Tensors(b);
    const rows: Record<string, string | number>[] = [];
    for (const family of names) {
      for (const c of FAMILIES[family](t, args)) {
        const us = timeCase(b, c, `kernels ${family} ${c.op} ${c.shape}`);
        const gbs = c.bytes / (us * 1e3);
        rows.push({ family, op: c.op, shape: c.shape, us, 'GB/s': gbs, 'share of copy bandwidth': `${((100 * gbs) / bandwidth).toFixed(0)}%` });
        t.free();
      }
      t.free(true);
    }
    const device = b.device.name;
    b.dispose();
    return {
      name: fixed ? `kernels/${fixed}` : 'kernels',
      config: { device, dtype, copyBandwidthGBs: bandwidth, gemmTflops: rate, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim() },
      rows,
      notes: [
        'us: GPU time per call, the median of 5 replays of a captured graph of many calls (inputs cycled over copies past the L2 cache).',
        'GB/s: the least bytes the op must read and write (each input and output once) per time; the share is of the measured device-to-device copy bandwidth.',
      ],
    };
  };
}
