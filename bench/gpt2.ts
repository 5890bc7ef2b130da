// GPT-2 decode on the GPU: Peregrine against Hugging Face transformers (eager) and PyTorch with a static
// KV cache under torch.compile "reduce-overhead" (bench/peers/gpt2_torch.py), in the same run.
//   npm run bench -- gpt2 [--configs 124M,1.5B] [--batches 1,64] [--prompt 128] [--new 128] [--no-peers] [--batch-invariant] [--out-dir DIR]
// Random fp16 weights; greedy; every sequence generates exactly --new tokens. Reports prefill ms, decode
// ms per step and tokens/s, the GPU time of one replayed decode graph, and the memory-bandwidth limit:
// (weight bytes + KV-cache bytes read per step) / the device-to-device copy bandwidth measured here.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import { loadGenerator } from '../src/index.js';
import { GPT2_CONFIGS, randomGpt2Dir, ROOT, roundPrompts, timedGenerations, type BenchArgs, type BenchResult } from './common.js';
import { copyBandwidth, OpProfiler, profileDecode, replayMs } from './cuda-timing.js';

const CONFIGS = GPT2_CONFIGS;

interface Row {
  engine: string;
  config: string;
  batch: number;
  prefill_ms: number | null;
  decode_ms_per_step: number | null;
  tokens_per_s: number | null;
  note?: string;
}

export async function gpt2(args: BenchArgs): Promise<BenchResult> {
  const configs = args.list('configs', ['124M', '1.5B']);
  const batches = args.list('batches', ['1', '64']).map(Number);
  const promptLen = args.int('prompt', 128), newTokens = args.int('new', 128);
  // every linear through the GEMV kernel (README: batch invariance): what the mode costs prompts and decode
  const batchInvariant = args.flag('batch-invariant');
  const rows: Row[] = [];
  const limits: Record<string, number> = {};
  const profiles: Record<string, Record<string, { ms: number; calls: number }>> = {};
  let bandwidth = 0;
  let device = '';
  for (const name of configs) {
    const cfg = CONFIGS[name];
    if (!cfg) throw new Error(`unknown config ${name}; use ${Object.keys(CONFIGS).join(', ')}`);
    const dir = randomGpt2Dir(name);
    {
      const maxBatch = Math.max(...batches);
      // the whole batch's prompts in one prefill pass, so that every sequence decodes from the same step
      const gen = await loadGenerator(dir, { device: 'cuda', dtype: 'f16', maxBatch, maxSeqLen: promptLen + newTokens + 64, prefillChunk: maxBatch * promptLen, batchInvariant });
      const backend = gen.runtime.backend as CudaBackend;
      device = backend.device.name;
      if (!bandwidth) bandwidth = copyBandwidth(backend);
      const tensorBytes = gen.runtime.memory().regions.find((r) => r.name === 'weights')!.bytes;
      for (const batch of batches) {
        const prompts = roundPrompts(batch, promptLen, 50257);
        const r = await timedGenerations(gen, prompts, { maxNewTokens: newTokens, stopAtEos: false });
        const median = (xs: number[]) => xs.sort((a, b) => a - b)[1];
        const decode = median(r.map((x) => x.decodeMs));
        const graphMs = replayMs(backend, gen.runtime, batch, promptLen, 50);
        profiles[`${name} x${batch}`] = profileDecode(backend, gen.runtime, batch, promptLen);
        // one prefill pass of the whole batch (a single new token: no decode step runs)
        const profiler = new OpProfiler(backend);
        await gen.generateIds(prompts(4), { maxNewTokens: 1, stopAtEos: false });
        profiles[`${name} x${batch} prefill`] = profiler.report();
        rows.push({
          engine: 'peregrine', config: name, batch, prefill_ms: median(r.map((x) => x.prefillMs)), decode_ms_per_step: decode,
          tokens_per_s: (1000 * batch) / decode, note: `GPU time of one decode graph: ${graphMs.toFixed(3)} ms`,
        });
        const kvBytes = 2 * cfg.layers * batch * (promptLen + newTokens / 2) * cfg.hidden * 2;
        limits[`${name} x${batch}`] = ((tensorBytes + kvBytes) / (bandwidth * 1e9)) * 1000;
      }
      gen.runtime.dispose();
      backend.dispose();
    }
  }
  if (!args.flag('no-peers')) rows.push(...peers(configs, batches, promptLen, newTokens));
  const table = rows.map((r) => ({
    engine: r.engine, model: r.config, batch: r.batch,
    'prefill ms': r.prefill_ms ?? '-', 'decode ms/step': r.decode_ms_per_step ?? '-', 'tokens/s': r.tokens_per_s ?? '-',
    'bandwidth limit ms/step': limits[`${r.config} x${r.batch}`] ?? '-',
    'peregrine speed-up': speedup(rows, r),
    note: r.note ?? '',
  }));
  const result: BenchResult = {
    name: 'gpt2',
    config: { device, promptTokens: promptLen, newTokens, dtype: 'fp16', batchInvariant, copyBandwidthGBs: bandwidth, command: `npm run bench -- gpt2 ${process.argv.slice(3).join(' ')}`.trim() },
    rows: table,
    notes: [
      'decode ms/step = (time of the last token - time of the first token) / (new tokens - 1), median of 3 runs; tokens/s = batch * 1000 / decode ms/step.',
      ...Object.entries(profiles).map(([k, p]) => `GPU time per op of one eager ${k.endsWith('prefill') ? 'prompt pass' : 'decode step'}, ${k}: ${Object.entries(p).sort((a, b) => b[1].ms - a[1].ms)
        .map(([op, v]) => `${op} ${v.ms.toFixed(3)} ms/${v.calls}`).join(', ')}`),
    ],
  };
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'gpt2.json'), JSON.stringify({ ...result, raw: rows, limits, profiles }, null, 1));
  }
  return result;
}

/** How many times faster Peregrine is than this row's engine, for the same model and batch. */
function speedup(rows: Row[], r: Row): string {
  if (r.engine === 'peregrine' || !r.decode_ms_per_step) return '';
  const ours = rows.find((x) => x.engine === 'peregrine' && x.config === r.config && x.batch === r.batch);
  return ours?.decode_ms_per_step ? `${(r.decode_ms_per_step / ours.decode_ms_per_step).toFixed(2)}x` : '';
}


function peers(configs: string[], batches: number[], prompt: number, newTokens: number): Row[] {
  const script = join(ROOT, 'bench', 'peers', 'gpt2_torch.py');
  if (!existsSync(script)) return [];
  const out = join(tmpdir(), `peregrine-peers-${process.pid}.json`);
  try {
    execFileSync('python3', [script, '--configs', configs.join(','), '--batches', batches.join(','), '--engines', 'hf-eager,torch-compile',
      '--prompt', String(prompt), '--new', String(newTokens), '--out', out], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 540_000 });
  } catch (err) {
    process.stderr.write(`peers failed: ${(err as Error).message}\n`);
  }
  if (!existsSync(out)) return [];
  const data = JSON.parse(readFileSync(out, 'utf8')) as { results: { engine: string; config: string; batch: number; prefill_ms: number; decode_ms_per_step: number; tokens_per_s: number; recompiles_during_timing: number | null; error: string | null }[] };
  return data.results.map((r) => ({
    engine: r.engine, config: r.config, batch: r.batch, prefill_ms: r.prefill_ms, decode_ms_per_step: r.decode_ms_per_step, tokens_per_s: r.tokens_per_s,
    note: r.error ? `error: ${r.error}` : r.recompiles_during_timing !== null ? `recompiles while timed: ${r.recompiles_during_timing}` : '',
  }));
}
