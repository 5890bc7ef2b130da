// Llama decode on the GPU: Llama-3.2-1B and Llama-3-8B configurations with random weights, as bf16 and as GGUF's
// Q8_0 and Q4_K (every matrix quantized; norms F32, the embedding table dequantized at load), against PyTorch with
// a static KV cache under torch.compile (bench/peers/llama_torch.py, bf16) in the same run.
//   npm run bench -- llama [--configs 1B,8B] [--formats bf16,q8_0,q4_k] [--batches 1,64] [--prompt 128] [--new 128] [--no-peers] [--out-dir DIR]
//                          [--gguf-dir DIR] [--llama-cpp FILE.json]
// --gguf-dir DIR loads DIR/llama-<config>-<format>.gguf (written by bench/peers/llama_cpp.py: the same random weights
// llama.cpp runs) instead of generating the weights; --llama-cpp FILE.json adds the rows of that script's --out
// (llama.cpp's CUDA build on those files), each compared with Peregrine on the same format.
// Reports prefill ms, decode ms per step, tokens/s and the memory-bandwidth limit: (weight bytes + KV-cache bytes
// read per step) / the device-to-device copy bandwidth measured here. The weights never touch a disk: they are
// generated as the loader reads them (random bytes, quantized blocks with small finite scales).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import { loadModel, loadModelDir } from '../src/engine/load.js';
import { WeightStore, type ModelDir } from '../src/loaders/model-dir.js';
import type { QuantType } from '../src/loaders/quant.js';
import { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { FIXTURES, ROOT, roundPrompts, timedGenerations, type BenchArgs, type BenchResult } from './common.js';
import { copyBandwidth, profileDecode } from './cuda-timing.js';
import { RandomWeights, type WeightSpec } from './random-weights.js';

export const CONFIGS: Record<string, { hidden: number; layers: number; heads: number; kvHeads: number; inner: number; vocab: number; tied: boolean }> = {
  '1B': { hidden: 2048, layers: 16, heads: 32, kvHeads: 8, inner: 8192, vocab: 128256, tied: true },
  '8B': { hidden: 4096, layers: 32, heads: 32, kvHeads: 8, inner: 14336, vocab: 128256, tied: false },
  // a size the CPU backend decodes in tens of milliseconds (bench/cpu-llama.ts)
  '160M': { hidden: 1024, layers: 8, heads: 16, kvHeads: 8, inner: 2816, vocab: 32000, tied: false },
};
const FORMATS: Record<string, 'BF16' | 'W8A8' | QuantType> = { bf16: 'BF16', q8_0: 'Q8_0', q4_k: 'Q4_K', w8a8: 'W8A8' };
/** W8A8's row scales: int8 weights up to 127 of them reach the BF16 weights' largest magnitude, 2^-5 */
const W8A8_SCALE = 2 ** -5 / 127;
export function randomLlama(name: string, format: string): ModelDir {
  const c = CONFIGS[name], q = FORMATS[format];
  if (!c || !q) throw new Error(`unknown config ${name} or format ${format}`);
  const D = c.hidden / c.heads, specs: WeightSpec[] = [];
  const add = (n: string, shape: number[], dtype: string): void => {
    if (dtype !== 'W8A8') {
      specs.push({ name: n, shape, dtype });
      return;
    }
    // SmoothQuant as peregrine quantize writes it: int8 rows, a scale per row, a smoothing scale per input
    const base = n.replace(/\.weight$/, '.');
    specs.push({ name: n, shape, dtype: 'I8' }, { name: base + 'weight_scale', shape: [shape[0]], dtype: 'F32', fill: W8A8_SCALE },
      { name: base + 'smooth_scale', shape: [shape[1]], dtype: 'F32', fill: 'ones' });
  };
  // the embedding and head of a W8A8 checkpoint stay 16-bit
  const table = q === 'BF16' || q === 'W8A8' ? 'BF16' : q;
  add('model.embed_tokens.weight', [c.vocab, c.hidden], table);
  add('model.norm.weight', [c.hidden], 'F32');
  if (!c.tied) add('lm_head.weight', [c.vocab, c.hidden], table);
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    add(p + 'input_layernorm.weight', [c.hidden], 'F32');
    add(p + 'post_attention_layernorm.weight', [c.hidden], 'F32');
    add(p + 'self_attn.q_proj.weight', [c.heads * D, c.hidden], q);
    add(p + 'self_attn.k_proj.weight', [c.kvHeads * D, c.hidden], q);
    add(p + 'self_attn.v_proj.weight', [c.kvHeads * D, c.hidden], q);
    add(p + 'self_attn.o_proj.weight', [c.hidden, c.heads * D], q);
    add(p + 'mlp.gate_proj.weight', [c.inner, c.hidden], q);
    add(p + 'mlp.up_proj.weight', [c.inner, c.hidden], q);
    add(p + 'mlp.down_proj.weight', [c.hidden, c.inner], q);
  }
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: c.vocab, hidden_size: c.hidden, num_hidden_layers: c.layers,
    num_attention_heads: c.heads, num_key_value_heads: c.kvHeads, intermediate_size: c.inner, max_position_embeddings: 8192, rms_norm_eps: 1e-5,
    rope_theta: 500000, tie_word_embeddings: c.tied, eos_token_id: [128001, 128009],
    ...(q === 'W8A8' ? { quantization_config: { quant_method: 'smoothquant', format: 'peregrine', bits: 8, alpha: 0.5 } } : {}),
  };
  return { dir: `random Llama ${name} ${format}`, config, generation: null, weights: new WeightStore([new RandomWeights(specs)]) };
}

interface Row { engine: string; config: string; format: string; batch: number; prefill_ms: number | null; decode_ms_per_step: number | null; tokens_per_s: number | null; note?: string }

export async function llama(args: BenchArgs): Promise<BenchResult> {
  const configs = args.list('configs', ['1B', '8B']), formats = args.list('formats', ['bf16', 'q8_0', 'q4_k']);
  const batches = args.list('batches', ['1', '64']).map(Number);
  const promptLen = args.int('prompt', 128), newTokens = args.int('new', 128);
  const tokenizer = Tokenizer.fromDir(join(FIXTURES, 'tokenizers', 'llama3-style'));
  const ggufDir = args.string('gguf-dir');
  const rows: Row[] = [];
  const limits: Record<string, number> = {};
  const profiles: Record<string, Record<string, { ms: number; calls: number }>> = {};
  let bandwidth = 0, device = '';
  for (const name of configs) {
    for (const format of formats) {
      const maxBatch = Math.max(...batches);
      const loadOptions = { device: 'cuda' as const, dtype: 'bf16' as const, maxBatch, maxSeqLen: promptLen + newTokens + 64, prefillChunk: maxBatch * promptLen };
      const file = ggufDir ? join(ggufDir, `llama-${name}-${format}.gguf`) : null;
      if (file && !existsSync(file)) throw new Error(`${file} not found; bench/peers/llama_cpp.py --gguf-only --gguf-dir ${ggufDir} makes it`);
      const m = file ? await loadModel(file, loadOptions) : await loadModelDir(randomLlama(name, format), tokenizer, loadOptions);
      if (m.kind !== 'causal-lm') throw new Error('internal: not a causal LM');
      const gen = m.generator, backend = gen.runtime.backend as CudaBackend;
      device = backend.device.name;
      if (!bandwidth) bandwidth = copyBandwidth(backend);
      const weightBytes = gen.runtime.memory().regions.find((r) => r.name === 'weights')!.bytes;
      const c = CONFIGS[name];
      for (const batch of batches) {
        const r = await timedGenerations(gen, roundPrompts(batch, promptLen, 800), { maxNewTokens: newTokens, stopAtEos: false });
        const median = (xs: number[]) => xs.sort((a, b) => a - b)[1];
        const decode = median(r.map((x) => x.decodeMs));
        rows.push({ engine: 'peregrine', config: name, format, batch, prefill_ms: median(r.map((x) => x.prefillMs)), decode_ms_per_step: decode, tokens_per_s: (1000 * batch) / decode });
        profiles[`${name} ${format} x${batch}`] = profileDecode(backend, gen.runtime, batch, promptLen);
        // the embedding table is read one row per token: the lookup costs nothing against the matrices
        const embedBytes = c.tied && format !== 'bf16' ? c.vocab * c.hidden * 2 : 0;
        const kvBytes = 2 * c.layers * batch * (promptLen + newTokens / 2) * (c.kvHeads * c.hidden / c.heads) * 2;
        limits[`${name} ${format} x${batch}`] = ((weightBytes - embedBytes - (c.tied ? 0 : c.vocab * c.hidden * 2) + kvBytes) / (bandwidth * 1e9)) * 1000;
      }
      gen.runtime.dispose();
      backend.dispose();
    }
  }
  if (!args.flag('no-peers') && formats.includes('bf16')) rows.push(...peers(configs, batches, promptLen, newTokens));
  const llamaCpp = args.string('llama-cpp');
  if (llamaCpp) rows.push(...llamaCppRows(llamaCpp, configs, formats, batches, promptLen, newTokens));
  // torch runs bf16 only; llama.cpp is compared with Peregrine on the same weights
  const ours = (r: Row) => rows.find((x) => x.engine === 'peregrine' && x.config === r.config && x.batch === r.batch && x.format === (r.engine === 'llama.cpp' ? r.format : 'bf16'));
  const table = rows.map((r) => {
    const limit = limits[`${r.config} ${r.format} x${r.batch}`];
    return {
      engine: r.engine, model: r.config, weights: r.format, batch: r.batch,
      'prefill ms': r.prefill_ms ?? '-', 'decode ms/step': r.decode_ms_per_step ?? '-', 'tokens/s': r.tokens_per_s ?? '-',
      'bandwidth limit ms/step': limit ?? '-', 'share of the limit': limit && r.decode_ms_per_step ? `${((100 * limit) / r.decode_ms_per_step).toFixed(0)}%` : '-',
      'vs peregrine bf16': r.engine !== 'peregrine' && r.decode_ms_per_step && ours(r)?.decode_ms_per_step ? `${(r.decode_ms_per_step / ours(r)!.decode_ms_per_step!).toFixed(2)}x slower` : '',
      note: r.note ?? '',
    };
  });
  const result: BenchResult = {
    name: 'llama',
    config: { device, promptTokens: promptLen, newTokens, computeDtype: 'bf16', copyBandwidthGBs: bandwidth, weights: ggufDir ? `GGUF files in ${ggufDir}` : 'generated at load', command: `npm run bench -- llama ${process.argv.slice(3).join(' ')}`.trim() },
    rows: table,
    notes: [
      'decode ms/step = (time of the last token - time of the first token) / (new tokens - 1), median of 3 runs; tokens/s = batch * 1000 / decode ms/step.',
      ...(llamaCpp ? ['llama.cpp: batch 1 from llama-bench (prefill: pp at depth 0; decode: tg of --new tokens after a --prompt-token context, / new tokens), larger batches from llama-batched-bench (t_pp; t_tg / new tokens), medians of 3; "vs peregrine bf16" compares llama.cpp rows with Peregrine on the same format.'] : []),
      'bandwidth limit: the matrices (and the LM head) plus the KV cache read once per step, at the measured copy bandwidth; the embedding table is not read whole.',
      ...Object.entries(profiles).map(([k, p]) => `GPU time per op of one eager decode step, ${k}: ${Object.entries(p).sort((a, b) => b[1].ms - a[1].ms)
        .map(([op, v]) => `${op} ${v.ms.toFixed(3)} ms/${v.calls}`).join(', ')}`),
    ],
  };
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'llama.json'), JSON.stringify({ ...result, raw: rows, limits, profiles }, null, 1));
  }
  return result;
}


/** The rows of bench/peers/llama_cpp.py's --out file that this run measured too. */
function llamaCppRows(file: string, configs: string[], formats: string[], batches: number[], prompt: number, newTokens: number): Row[] {
  const data = JSON.parse(readFileSync(file, 'utf8')) as { prompt: number; new: number; results: { config: string; format: string; batch: number; prefill_ms: number | null; decode_ms_per_step: number | null; tokens_per_s: number | null; error: string | null }[] };
  if (data.prompt !== prompt || data.new !== newTokens) throw new Error(`${file} measured --prompt ${data.prompt} --new ${data.new}, not ${prompt} and ${newTokens}`);
  return data.results.filter((r) => configs.includes(r.config) && formats.includes(r.format) && batches.includes(r.batch))
    .map((r) => ({ engine: 'llama.cpp', config: r.config, format: r.format, batch: r.batch, prefill_ms: r.prefill_ms, decode_ms_per_step: r.decode_ms_per_step, tokens_per_s: r.tokens_per_s, note: r.error ? `error: ${r.error}` : '' }));
}

function peers(configs: string[], batches: number[], prompt: number, newTokens: number): Row[] {
  const script = join(ROOT, 'bench', 'peers', 'llama_torch.py');
  if (!existsSync(script)) return [];
  const out = join(tmpdir(), `peregrine-llama-peers-${process.pid}.json`);
  try {
    execFileSync('python3', [script, '--configs', configs.join(','), '--batches', batches.join(','), '--prompt', String(prompt), '--new', String(newTokens), '--out', out],
      { stdio: ['ignore', 'inherit', 'inherit'], timeout: 400_000 });
  } catch (err) {
    process.stderr.write(`peers failed: ${(err as Error).message}\n`);
  }
  if (!existsSync(out)) return [];
  const data = JSON.parse(readFileSync(out, 'utf8')) as { results: { config: string; batch: number; prefill_ms: number; decode_ms_per_step: number; tokens_per_s: number; error: string | null }[] };
  return data.results.map((r) => ({ engine: 'torch-compile', config: r.config, format: 'bf16', batch: r.batch, prefill_ms: r.prefill_ms, decode_ms_per_step: r.decode_ms_per_step, tokens_per_s: r.tokens_per_s, note: r.error ? `error: ${r.error}` : '' }));
}
