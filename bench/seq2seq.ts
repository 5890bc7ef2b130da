// Encoder-decoder beam search on the GPU (issue 11): Marian-base-like and BART-large-like configurations with random
// fp16 weights, against Hugging Face generate(num_beams) (bench/peers/seq2seq_hf.py) in the same run.
//   npm run bench -- seq2seq [--configs marian,bart-large] [--batches 1,32,128] [--beams 4] [--new 64] [--min-source 32]
//                            [--max-source 64] [--seed 1] [--device cuda|cpu] [--no-peers] [--profile] [--out-dir DIR]
// --profile: CUDA graphs off (every op launched and timed with events), and one more call per batch whose GPU time
// per op is reported; the table's times are then those of eager launches, not of the graph replays.
// Each source's length is drawn in [--min-source, --max-source] and its tokens at random (a seeded generator that
// the peer repeats), no tokenizer. Both engines make exactly --new tokens per beam: Peregrine with min new tokens =
// max new tokens (end tokens are masked until then), Hugging Face with min_new_tokens = max_new_tokens.
// marian-tiny and bart-tiny are for trying the benchmark out on the CPU (--device cpu, the peer on the CPU too).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import { loadModelDir } from '../src/engine/load.js';
import { WeightStore, type ModelDir } from '../src/loaders/model-dir.js';
import { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { FIXTURES, ROOT, timeRuns, type BenchArgs, type BenchResult } from './common.js';
import { OpProfiler } from './cuda-timing.js';
import { RandomWeights, type WeightSpec } from './random-weights.js';

interface S2SConfig {
  variant: 'marian' | 'bart';
  hidden: number; layers: number; heads: number; inner: number; vocab: number; positions: number;
}

/** the peer's CONFIGS (bench/peers/seq2seq_hf.py) hold the same sizes */
export const S2S_CONFIGS: Record<string, S2SConfig> = {
  // Helsinki-NLP/opus-mt-en-de's shape (MarianMTModel: sinusoidal positions, swish, scaled embeddings, tied head)
  marian: { variant: 'marian', hidden: 512, layers: 6, heads: 8, inner: 2048, vocab: 32000, positions: 512 },
  // facebook/bart-large's shape (BartForConditionalGeneration: learned positions, gelu)
  'bart-large': { variant: 'bart', hidden: 1024, layers: 12, heads: 16, inner: 4096, vocab: 50265, positions: 1024 },
  'marian-tiny': { variant: 'marian', hidden: 64, layers: 2, heads: 4, inner: 128, vocab: 1000, positions: 128 },
  'bart-tiny': { variant: 'bart', hidden: 64, layers: 2, heads: 4, inner: 128, vocab: 1000, positions: 128 },
};

/** config.json of a configuration, as Hugging Face's MarianConfig / BartConfig read it */
function hfConfig(c: S2SConfig): Record<string, unknown> {
  const marian = c.variant === 'marian';
  return {
    architectures: [marian ? 'MarianMTModel' : 'BartForConditionalGeneration'], model_type: c.variant,
    vocab_size: c.vocab, d_model: c.hidden, encoder_layers: c.layers, decoder_layers: c.layers,
    encoder_attention_heads: c.heads, decoder_attention_heads: c.heads, encoder_ffn_dim: c.inner, decoder_ffn_dim: c.inner,
    max_position_embeddings: c.positions, activation_function: marian ? 'swish' : 'gelu', scale_embedding: marian,
    tie_word_embeddings: true, is_encoder_decoder: true,
    ...(marian
      ? { decoder_vocab_size: c.vocab, share_encoder_decoder_embeddings: true, pad_token_id: c.vocab - 1, eos_token_id: 0, decoder_start_token_id: c.vocab - 1 }
      : { bos_token_id: 0, pad_token_id: 1, eos_token_id: 2, decoder_start_token_id: 2 }),
  };
}

function randomModel(name: string): ModelDir {
  const c = S2S_CONFIGS[name];
  if (!c) throw new Error(`unknown config ${name}; use ${Object.keys(S2S_CONFIGS).join(', ')}`);
  // fp16 matrices (the CPU widens them to f32), f32 norms and biases
  const H = c.hidden, specs: WeightSpec[] = [];
  const matrix = (n: string, shape: number[]) => specs.push({ name: n, shape, dtype: 'F16' });
  const zeros = (n: string, len: number) => specs.push({ name: n, shape: [len], dtype: 'F32', fill: 'zeros' });
  const linear = (p: string, out: number, inp: number) => { matrix(p + '.weight', [out, inp]); zeros(p + '.bias', out); };
  const norm = (p: string) => { specs.push({ name: p + '.weight', shape: [H], dtype: 'F32', fill: 'ones' }); zeros(p + '.bias', H); };
  const attention = (p: string) => { for (const x of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${p}.${x}`, H, H); };
  matrix('model.shared.weight', [c.vocab, H]);
  specs.push({ name: 'final_logits_bias', shape: [1, c.vocab], dtype: 'F32', fill: 'zeros' });
  for (const stack of ['encoder', 'decoder']) {
    if (c.variant === 'bart') {
      matrix(`model.${stack}.embed_positions.weight`, [c.positions + 2, H]);
      norm(`model.${stack}.layernorm_embedding`);
    }
    for (let l = 0; l < c.layers; l++) {
      const p = `model.${stack}.layers.${l}`;
      attention(p + '.self_attn');
      norm(p + '.self_attn_layer_norm');
      if (stack === 'decoder') {
        attention(p + '.encoder_attn');
        norm(p + '.encoder_attn_layer_norm');
      }
      linear(p + '.fc1', c.inner, H);
      linear(p + '.fc2', H, c.inner);
      norm(p + '.final_layer_norm');
    }
  }
  return { dir: `random ${name}`, config: hfConfig(c), generation: null, weights: new WeightStore([new RandomWeights(specs)]) };
}

/**
 * `batch` sources: lengths in [lo, hi], ids in [3, vocab - 2] (clear of BART's bos/pad/eos and Marian's eos 0 and pad
 * vocab - 1), from a 32-bit LCG seeded with `seed` that bench/peers/seq2seq_hf.py repeats draw for draw.
 */
export function sources(batch: number, lo: number, hi: number, vocab: number, seed: number): number[][] {
  let x = seed >>> 0;
  const draw = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  return Array.from({ length: batch }, () => {
    const len = lo + (draw() % (hi - lo + 1));
    return Array.from({ length: len }, () => 3 + (draw() % (vocab - 4)));
  });
}

interface PeerResult { config: string; batch: number; ms: number | null; generated: number | null; source_tokens: number; error: string | null }

export async function seq2seq(args: BenchArgs): Promise<BenchResult> {
  const configs = args.list('configs', ['marian', 'bart-large']);
  const batches = args.list('batches', ['1', '32', '128']).map(Number);
  const beams = args.int('beams', 4), newTokens = args.int('new', 64), seed = args.int('seed', 1);
  const lo = args.int('min-source', 32), hi = args.int('max-source', 64);
  if (lo > hi) throw new Error('--min-source is above --max-source');
  const device = (args.string('device') ?? 'cuda') as 'cuda' | 'cpu';
  const tokenizer = Tokenizer.fromDir(join(FIXTURES, 'tokenizers', 'gpt2')); // only for text, which this bench never makes
  const maxBatch = Math.max(...batches);
  const ours: { config: string; batch: number; ms: number; generated: number; times: number[]; preemptions: number; split: string }[] = [];
  const profiles: Record<string, Record<string, { ms: number; calls: number }>> = {};
  const profiling = args.flag('profile') && device === 'cuda';
  if (profiling) process.env.PEREGRINE_CUDA_GRAPHS = '0';
  const memory: Record<string, string> = {};
  let deviceName = 'cpu';
  for (const name of configs) {
    const rows = maxBatch * beams, bs = 16;
    const m = await loadModelDir(randomModel(name), tokenizer, {
      device, dtype: device === 'cuda' ? 'f16' : undefined,
      // every beam of every source at once: slots, decode rows and KV blocks for all of them (a beam's blocks
      // over its start token and new tokens, one more for copy-on-write), so nothing waits or is preempted
      maxBatch: rows, maxSeqLen: newTokens + 1, blockSize: bs, kvBlocks: rows * (Math.ceil((newTokens + 1) / bs) + 1) + 1,
    });
    if (m.kind !== 'causal-lm' || !m.generator.seq2seq) throw new Error('internal: not an encoder-decoder');
    const gen = m.generator;
    if (device === 'cuda') deviceName = (gen.runtime.backend as CudaBackend).device.name;
    memory[name] = gen.runtime.memory().regions.map((r) => `${r.name} ${(r.bytes / 2 ** 20).toFixed(0)} MiB`).join(', ');
    const vocab = S2S_CONFIGS[name].vocab;
    for (const batch of batches) {
      const src = sources(batch, lo, hi, vocab, seed);
      const warm = Math.min(8, newTokens), opts = { numBeams: beams, maxNewTokens: newTokens, minNewTokens: newTokens, earlyStopping: false as const };
      const before = gen.scheduler.stats().preemptions;
      const stat = () => gen.scheduler.stats();
      await gen.generateIds(src, { ...opts, maxNewTokens: warm, minNewTokens: warm }); // warm-up: GEMM tuning, graph capture
      const s0 = stat();
      const { ms, times, last } = await timeRuns(3, async () => {
        const r = await gen.generateIds(src, opts);
        const short = r.find((x) => x.ids.length !== newTokens);
        if (short) throw new Error(`${name} x${batch}: a source got ${short.ids.length} tokens, not ${newTokens}`);
        return r;
      });
      const s1 = stat(), per = (k: 'prefillMs' | 'decodeMs' | 'decodeSteps' | 'prefillPasses') => (s1[k] - s0[k]) / 3;
      const split = `${per('decodeSteps').toFixed(0)} decode steps ${per('decodeMs').toFixed(1)} ms (launch and wait), ${per('prefillPasses').toFixed(0)} prefill passes ${per('prefillMs').toFixed(1)} ms`;
      ours.push({ config: name, batch, ms, generated: last[0].ids.length, times, preemptions: gen.scheduler.stats().preemptions - before, split });
      if (profiling) {
        const profiler = new OpProfiler(gen.runtime.backend as CudaBackend);
        await gen.generateIds(src, opts);
        profiles[`${name} x${batch}`] = profiler.report();
      }
      process.stderr.write(`[seq2seq] peregrine ${name} x${batch}: ${ours[ours.length - 1].ms.toFixed(1)} ms\n`);
    }
    gen.dispose();
  }
  const peer = args.flag('no-peers') ? null : runPeer(configs, batches, beams, newTokens, lo, hi, seed, device);
  const table = ours.map((o) => {
    const p = peer?.results.find((r) => r.config === o.config && r.batch === o.batch);
    const tps = (ms: number) => (o.batch * newTokens * 1000) / ms;
    return {
      model: o.config, batch: o.batch, beams, 'new tokens': o.generated,
      'peregrine ms': o.ms, 'peregrine ms/source': o.ms / o.batch, 'peregrine tokens/s': tps(o.ms),
      'hf ms': p?.ms ?? (p?.error ? `error: ${p.error}` : '-'), 'hf ms/source': p?.ms ? p.ms / o.batch : '-', 'hf tokens/s': p?.ms ? tps(p.ms) : '-',
      'peregrine speed-up': p?.ms ? `${(p.ms / o.ms).toFixed(1)}x` : '-',
      target: o.batch === 1 ? '>= 10x' : o.batch >= 128 ? '>= 5x' : '',
    };
  });
  const result: BenchResult = {
    name: 'seq2seq',
    config: {
      device: deviceName, dtype: device === 'cuda' ? 'f16' : 'f32', weights: 'random, generated at load', beams, newTokens, sourceTokens: `${lo}..${hi}`, seed,
      peer: peer ? `transformers ${peer.transformers}, torch ${peer.torch}, ${peer.device}` : 'none',
      command: `npm run bench -- seq2seq ${process.argv.slice(3).join(' ')}`.trim(),
    },
    rows: table,
    notes: [
      `ms: the whole generate call for the batch (encoder, decoder start, every beam step), median of 3 after a warm-up of ${Math.min(8, newTokens)} new tokens on the same sources; Peregrine: wall time to the results on the host, Hugging Face: CUDA-synchronized wall time of generate().`,
      'tokens/s = batch * new tokens * 1000 / ms (the best beam\'s tokens; each step computes beams rows per source); ms/source = ms / batch; speed-up = HF ms / Peregrine ms.',
      `Exactly ${newTokens} new tokens on both sides: Peregrine min new tokens = max new tokens (end tokens masked until then; checked: every result has ${newTokens} ids), HF min_new_tokens = max_new_tokens with early_stopping=False and its own GenerationConfig (no forced end token, no bad words, no n-gram ban); both with length penalty 1.`,
      'Sources: lengths and ids from a seeded 32-bit LCG that the peer repeats (it checks the total of source tokens); HF pads on the right with an attention mask.',
      `HF: MarianMTModel / BartForConditionalGeneration from the same config, its own random init (the weights differ, the work does not), ${device === 'cuda' ? 'fp16' : 'f32'}, default attention (sdpa), dynamic cache.`,
      'Targets (issue 11): >= 10x HF at batch 1, >= 5x at batch 128.',
      'CTranslate2 is not compared: no wheel of it can reach the GPU machine (no network there).',
      ...Object.entries(memory).map(([k, v]) => `Peregrine's memory, ${k} (max batch ${maxBatch} x ${beams} beams): ${v}.`),
      `Where a call's time goes (mean of the timed calls; the rest is the encoder and the host's beam search): ${ours.map((o) => `${o.config} x${o.batch}: ${o.split}`).join('; ')}.`,
      ...Object.entries(profiles).map(([k, p]) => `GPU time per op of one eager call (graphs off), ${k}: ${Object.entries(p).sort((a, b) => b[1].ms - a[1].ms)
        .map(([op, v]) => `${op} ${v.ms.toFixed(1)} ms / ${v.calls}`).join(', ')}.`),
      `Preemptions (warm-up and timed calls; 0 means every beam of every source ran at once): ${ours.map((o) => `${o.config} x${o.batch} ${o.preemptions}`).join(', ')}.`,
    ],
  };
  if (peer) {
    const mismatch = ours.filter((o) => {
      const p = peer.results.find((r) => r.config === o.config && r.batch === o.batch);
      return p && p.source_tokens !== sources(o.batch, lo, hi, S2S_CONFIGS[o.config].vocab, seed).reduce((a, s) => a + s.length, 0);
    });
    if (mismatch.length) result.notes!.push(`WARNING: the peer's sources differ in total tokens for ${mismatch.map((o) => `${o.config} x${o.batch}`).join(', ')}`);
  }
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'seq2seq.json'), JSON.stringify({ ...result, peregrine: ours, peer, profiles }, null, 1));
  }
  return result;
}

function runPeer(configs: string[], batches: number[], beams: number, newTokens: number, lo: number, hi: number, seed: number, device: string) {
  const out = join(tmpdir(), `peregrine-seq2seq-peer-${process.pid}.json`);
  try {
    execFileSync('python3', [join(ROOT, 'bench', 'peers', 'seq2seq_hf.py'), '--configs', configs.join(','), '--batches', batches.join(','),
      '--beams', String(beams), '--new', String(newTokens), '--min-source', String(lo), '--max-source', String(hi), '--seed', String(seed),
      '--device', device, '--out', out], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 400_000 });
  } catch (err) {
    process.stderr.write(`peer failed: ${(err as Error).message}\n`);
  }
  if (!existsSync(out)) return null;
  return JSON.parse(readFileSync(out, 'utf8')) as { results: PeerResult[]; transformers: string; torch: string; device: string };
}
