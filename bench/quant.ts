// Quantized inference on the GPU: each configuration loaded in fp16 and quantized at load (--quantize), the same
// random weights both times, decode timed at each batch and the logits compared with the fp16 model's.
//   npm run bench -- quant [--configs gpt2-1.5B,llama-8B] [--methods int8,int4,fp8,w8a8] [--batches 1,64] [--prompt 128] [--new 64] [--out-dir DIR]
// gpt2-*: bench/common.ts's random GPT-2 directory (GPT2_CONFIGS); llama-*: bench/llama.ts's random Llama weights
// (BF16 as generated, computed in fp16). Logit error: max |int8 - fp16| / max |fp16| over the next-token logits of
// 8 prompts. w8a8 (Llama only): a SmoothQuant checkpoint of random int8 weights (bench/llama.ts's w8a8 format), not
// the fp16 model's weights quantized, so its speed is comparable and its logit error is not measured. Bandwidth limit as bench/llama.ts: the weight bytes (the embedding table excepted) plus the KV cache
// read once per step, at the copy bandwidth measured in the run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import type { TextGenerator } from '../src/engine/generation.js';
import { loadModel, loadModelDir, type LoadOptions } from '../src/engine/load.js';
import type { QuantizeMethod } from '../src/loaders/quantize-methods.js';
import { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { FIXTURES, GPT2_CONFIGS, randomGpt2Dir, roundPrompts, timedGenerations, type BenchArgs, type BenchResult } from './common.js';
import { copyBandwidth, profileDecode } from './cuda-timing.js';
import { CONFIGS as LLAMA_CONFIGS, randomLlama } from './llama.js';

const TARGETS: Record<string, Record<number, string>> = { int8: { 1: 'batch 1 >= 1.7x fp16' }, int4: { 1: 'batch 1 >= 3x fp16' }, fp8: { 64: 'batch 64 >= 1.5x fp16' } };

interface Shape { layers: number; hidden: number; kvWidth: number; vocab: number; tiedTable: boolean }

type Method = QuantizeMethod | 'w8a8';

async function load(config: string, method: Method | null, options: LoadOptions): Promise<{ gen: TextGenerator; shape: Shape }> {
  const o = { ...options, quantize: method === 'w8a8' ? undefined : method ?? undefined };
  const [family, size] = config.split('-');
  if (family === 'gpt2') {
    const c = GPT2_CONFIGS[size];
    if (!c) throw new Error(`unknown config ${config}; gpt2-${Object.keys(GPT2_CONFIGS).join(', gpt2-')}`);
    const m = await loadModel(randomGpt2Dir(size), o);
    if (m.kind !== 'causal-lm') throw new Error('internal: not a causal LM');
    return { gen: m.generator, shape: { layers: c.layers, hidden: c.hidden, kvWidth: c.hidden, vocab: 50257, tiedTable: true } };
  }
  const c = LLAMA_CONFIGS[size];
  if (family !== 'llama' || !c) throw new Error(`unknown config ${config}; llama-${Object.keys(LLAMA_CONFIGS).join(', llama-')}`);
  const m = await loadModelDir(randomLlama(size, method === 'w8a8' ? 'w8a8' : 'bf16'), Tokenizer.fromDir(join(FIXTURES, 'tokenizers', 'llama3-style')), o);
  if (m.kind !== 'causal-lm') throw new Error('internal: not a causal LM');
  return { gen: m.generator, shape: { layers: c.layers, hidden: c.hidden, kvWidth: (c.kvHeads * c.hidden) / c.heads, vocab: c.vocab, tiedTable: c.tied } };
}

/** The next-token logits of `prompts`, one row each. */
async function lastLogits(gen: TextGenerator, prompts: number[][]): Promise<Float32Array> {
  await gen.generateIds(prompts, { maxNewTokens: 1, stopAtEos: false, logprobs: true });
  return gen.runtime.readLogits(prompts.length).slice();
}

function relError(a: Float32Array, b: Float32Array): number {
  let worst = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return worst / scale;
}

interface Row { config: string; method: string; batch: number; decodeMs: number; prefillMs: number; loadS: number; weightBytes: number; limitMs: number; logitError: number | null }

export async function quant(args: BenchArgs): Promise<BenchResult> {
  const configs = args.list('configs', ['gpt2-1.5B', 'llama-8B']), methods = args.list('methods', ['int8', 'int4', 'fp8']) as Method[];
  const batches = args.list('batches', ['1', '64']).map(Number);
  const promptLen = args.int('prompt', 128), newTokens = args.int('new', 64);
  const rows: Row[] = [];
  const profiles: Record<string, Record<string, { ms: number; calls: number }>> = {};
  let bandwidth = 0, device = '';
  for (const config of configs) {
    let reference: Float32Array | null = null;
    for (const method of [null, ...methods]) {
      if (method === 'w8a8' && config.startsWith('gpt2')) continue; // no random W8A8 GPT-2 checkpoint
      const maxBatch = Math.max(...batches, 8);
      const t0 = performance.now();
      const { gen, shape } = await load(config, method, { device: 'cuda', dtype: 'f16', maxBatch, maxSeqLen: promptLen + newTokens + 64, prefillChunk: maxBatch * promptLen });
      const loadS = (performance.now() - t0) / 1000;
      const backend = gen.runtime.backend as CudaBackend;
      device = backend.device.name;
      if (!bandwidth) bandwidth = copyBandwidth(backend);
      const weightBytes = gen.runtime.memory().regions.find((r) => r.name === 'weights')!.bytes;
      const logits = await lastLogits(gen, roundPrompts(8, promptLen, 800)(0));
      if (!method) reference = logits;
      const label = method ?? 'fp16';
      for (const batch of batches) {
        const r = await timedGenerations(gen, roundPrompts(batch, promptLen, 800), { maxNewTokens: newTokens, stopAtEos: false });
        const median = (xs: number[]) => xs.sort((a, b) => a - b)[1];
        profiles[`${config} ${label} x${batch}`] = profileDecode(backend, gen.runtime, batch, promptLen);
        // the embedding table is read a row per token; a tied table is read whole as the LM head
        const table = shape.tiedTable ? 0 : shape.vocab * shape.hidden * 2;
        const kvBytes = 2 * shape.layers * batch * (promptLen + newTokens / 2) * shape.kvWidth * 2;
        rows.push({
          config, method: label, batch, decodeMs: median(r.map((x) => x.decodeMs)), prefillMs: median(r.map((x) => x.prefillMs)), loadS, weightBytes,
          limitMs: ((weightBytes - table + kvBytes) / (bandwidth * 1e9)) * 1000, logitError: method && method !== 'w8a8' && reference ? relError(logits, reference) : null,
        });
      }
      gen.runtime.dispose();
      backend.dispose();
    }
  }
  const fp16 = (r: Row) => rows.find((x) => x.config === r.config && x.batch === r.batch && x.method === 'fp16')!;
  const table = rows.map((r) => ({
    model: r.config, weights: r.method, batch: r.batch, 'decode ms/step': r.decodeMs, 'tokens/s': (1000 * r.batch) / r.decodeMs,
    'speed-up vs fp16': r.method === 'fp16' ? '' : `${(fp16(r).decodeMs / r.decodeMs).toFixed(2)}x`,
    'bandwidth limit ms/step': r.limitMs, 'share of the limit': `${((100 * r.limitMs) / r.decodeMs).toFixed(0)}%`,
    'weights GiB': r.weightBytes / 2 ** 30, 'logit error vs fp16': r.logitError ?? '', 'prefill ms': r.prefillMs, 'load s': r.loadS,
    target: TARGETS[r.method]?.[r.batch] ?? '',
  }));
  const result: BenchResult = {
    name: 'quant',
    config: { device, promptTokens: promptLen, newTokens, computeDtype: 'f16', copyBandwidthGBs: bandwidth, weights: 'random, generated at load (the same for each method)', command: `npm run bench -- quant ${process.argv.slice(3).join(' ')}`.trim() },
    rows: table,
    notes: [
      'decode ms/step = (time of the last token - time of the first) / (new tokens - 1), median of 3 runs; tokens/s = batch * 1000 / decode ms/step.',
      'int8: --quantize int8, the blocks\' linear layers as Q8_0 (int8 weights, an f16 scale per 32), the embedding and LM head in fp16.',
      'int4: --quantize int4, the blocks\' linear layers as grouped int4 (an f16 scale and a zero per 128 inputs, round to nearest: the layout and kernels AWQ and GPTQ checkpoints run on), the embedding and LM head in fp16.',
      'fp8: --quantize fp8, the blocks\' linear layers as E4M3 with an f32 scale per output channel; one row a GEMV against x as it is, more rows x rounded to E4M3 per token through cuBLASLt\'s FP8 GEMM.',
      'w8a8: a random SmoothQuant checkpoint (int8 weights per output channel, int8 activations per token): its speed, not its accuracy.',
      'logit error vs fp16: max |logits - fp16 logits| / max |fp16 logits|, next-token logits of 8 prompts of --prompt tokens.',
      ...Object.entries(profiles).map(([k, p]) => `GPU time per op of one eager decode step, ${k}: ${Object.entries(p).sort((a, b) => b[1].ms - a[1].ms)
        .map(([op, v]) => `${op} ${v.ms.toFixed(3)} ms/${v.calls}`).join(', ')}`),
    ],
  };
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'quant.json'), JSON.stringify({ ...result, raw: rows, profiles }, null, 1));
  }
  return result;
}
