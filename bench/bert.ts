// BERT encoders on the GPU: Peregrine (packed sequences, no padding) against Hugging Face transformers (padded, SDPA)
// and the same under torch.compile (bench/peers/bert_torch.py), in the same run.
//   npm run bench -- bert [--configs base,large] [--batch 64] [--min 32] [--max 256] [--short 32] [--dtype f16|bf16]
//     [--reps 20] [--no-peers] [--out-dir DIR]
// Random weights (fp16 matrices, LayerNorm gains 1 and shifts 0, biases 0), random token ids. Two inputs per config:
// `batch` sequences with lengths uniform in [min, max] (a fixed seed, so every engine sees the same lengths), and one
// sequence of `short` tokens. Peregrine runs Embedder.embedIds with mean pooling (what an embedding call costs,
// the host's work included); the peers run the model and a masked mean. Reports wall ms per batch (median), real
// tokens/s, and Peregrine's GPU time per op of one pass.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import { loadModelDir } from '../src/engine/load.js';
import { WeightStore, type ModelDir } from '../src/loaders/model-dir.js';
import { seededRandom } from '../src/ops/rng.js';
import { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { FIXTURES, ROOT, type BenchArgs, type BenchResult } from './common.js';
import { OpProfiler } from './cuda-timing.js';
import { RandomWeights, type WeightSpec } from './random-weights.js';

const CONFIGS: Record<string, { hidden: number; layers: number; heads: number; inner: number }> = {
  base: { hidden: 768, layers: 12, heads: 12, inner: 3072 },
  large: { hidden: 1024, layers: 24, heads: 16, inner: 4096 },
};
const VOCAB = 30522, POSITIONS = 512;

/** A BertModel of a named configuration with random weights under Hugging Face's names. */
function randomBert(name: string, dtype: 'F16' | 'BF16'): ModelDir {
  const c = CONFIGS[name];
  if (!c) throw new Error(`unknown config ${name}; use ${Object.keys(CONFIGS).join(', ')}`);
  const specs: WeightSpec[] = [];
  const linear = (p: string, out: number, inp: number) => specs.push({ name: p + '.weight', shape: [out, inp], dtype }, { name: p + '.bias', shape: [out], dtype: 'F32', fill: 'zeros' });
  const norm = (p: string) => specs.push({ name: p + '.weight', shape: [c.hidden], dtype: 'F32' }, { name: p + '.bias', shape: [c.hidden], dtype: 'F32', fill: 'zeros' });
  specs.push({ name: 'embeddings.word_embeddings.weight', shape: [VOCAB, c.hidden], dtype },
    { name: 'embeddings.position_embeddings.weight', shape: [POSITIONS, c.hidden], dtype },
    { name: 'embeddings.token_type_embeddings.weight', shape: [2, c.hidden], dtype });
  norm('embeddings.LayerNorm');
  for (let l = 0; l < c.layers; l++) {
    const p = `encoder.layer.${l}.`;
    for (const x of ['query', 'key', 'value']) linear(p + 'attention.self.' + x, c.hidden, c.hidden);
    linear(p + 'attention.output.dense', c.hidden, c.hidden);
    norm(p + 'attention.output.LayerNorm');
    linear(p + 'intermediate.dense', c.inner, c.hidden);
    linear(p + 'output.dense', c.hidden, c.inner);
    norm(p + 'output.LayerNorm');
  }
  const config = {
    architectures: ['BertModel'], model_type: 'bert', vocab_size: VOCAB, hidden_size: c.hidden, num_hidden_layers: c.layers,
    num_attention_heads: c.heads, intermediate_size: c.inner, max_position_embeddings: POSITIONS, type_vocab_size: 2,
    hidden_act: 'gelu', layer_norm_eps: 1e-12, pad_token_id: 0,
  };
  return { dir: `random BERT ${name}`, config, generation: null, weights: new WeightStore([new RandomWeights(specs)]) };
}

interface Row { engine: string; config: string; input: string; ms: number | null; tokens: number; note?: string }

export async function bert(args: BenchArgs): Promise<BenchResult> {
  const configs = args.list('configs', ['base', 'large']);
  const batch = args.int('batch', 64), lo = args.int('min', 32), hi = args.int('max', 256), short = args.int('short', 32);
  const reps = args.int('reps', 20);
  const dtype = (args.string('dtype') ?? 'f16') as 'f16' | 'bf16';
  const rand = seededRandom(7);
  const lengths = Array.from({ length: batch }, () => lo + Math.floor(rand() * (hi - lo + 1)));
  const inputs: Record<string, number[]> = { [`${batch} x [${lo}, ${hi}]`]: lengths, [`1 x ${short}`]: [short] };
  const tokenizer = Tokenizer.fromDir(join(FIXTURES, 'tokenizers', 'bert-base-uncased'));
  const rows: Row[] = [];
  const profiles: Record<string, Record<string, { ms: number; calls: number }>> = {};
  let device = '';
  for (const name of configs) {
    const m = await loadModelDir(randomBert(name, dtype === 'f16' ? 'F16' : 'BF16'), tokenizer, { device: 'cuda', dtype });
    if (m.kind !== 'encoder') throw new Error('internal: not an encoder');
    const emb = m.embedder, backend = emb.model.backend as CudaBackend;
    device = backend.device.name;
    for (const [input, lens] of Object.entries(inputs)) {
      const seqs = lens.map((len, s) => Int32Array.from({ length: len }, (_, i) => 1000 + ((s * 7919 + i * 104729) % 28000)));
      for (let i = 0; i < 3; i++) emb.embedIds(seqs, { pooling: 'mean' });
      const times: number[] = [];
      for (let i = 0; i < reps; i++) {
        const t0 = performance.now();
        emb.embedIds(seqs, { pooling: 'mean' });
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const gpuMs = backend.timeMs(() => emb.model.encode(seqs, { pooling: 'mean', hidden: false }));
      const profiler = new OpProfiler(backend);
      emb.model.encode(seqs, { pooling: 'mean', hidden: false });
      profiles[`${name} ${input}`] = profiler.report();
      rows.push({ engine: 'peregrine', config: name, input, ms: times[reps >> 1], tokens: lens.reduce((a, x) => a + x, 0), note: `GPU time of one pass: ${gpuMs.toFixed(3)} ms` });
    }
    emb.model.dispose();
    backend.dispose();
  }
  if (!args.flag('no-peers')) rows.push(...peers(configs, inputs, dtype, reps));
  const table = rows.map((r) => {
    const ours = rows.find((x) => x.engine === 'peregrine' && x.config === r.config && x.input === r.input);
    return {
      engine: r.engine, model: `BERT-${r.config}`, input: r.input, 'ms per batch': r.ms ?? '-', 'real tokens/s': r.ms ? (r.tokens * 1000) / r.ms : '-',
      'peregrine speed-up': r !== ours && r.ms && ours?.ms ? `${(r.ms / ours.ms).toFixed(2)}x` : '', note: r.note ?? '',
    };
  });
  const result: BenchResult = {
    name: 'bert',
    config: { device, dtype, lengths, command: `npm run bench -- bert ${process.argv.slice(3).join(' ')}`.trim() },
    rows: table,
    notes: [
      `ms per batch: wall time, median of ${reps} after 3 warm-ups (Peregrine: embedIds with mean pooling, the vectors back on the host; peers: forward and masked mean, synchronized).`,
      ...Object.entries(profiles).map(([k, p]) => `GPU time per op of one pass, ${k}: ${Object.entries(p).sort((a, b) => b[1].ms - a[1].ms)
        .map(([op, v]) => `${op} ${v.ms.toFixed(3)} ms/${v.calls}`).join(', ')}`),
    ],
  };
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'bert.json'), JSON.stringify({ ...result, profiles }, null, 1));
  }
  return result;
}

function peers(configs: string[], inputs: Record<string, number[]>, dtype: string, reps: number): Row[] {
  const script = join(ROOT, 'bench', 'peers', 'bert_torch.py');
  if (!existsSync(script)) return [];
  const out = join(tmpdir(), `peregrine-bert-peers-${process.pid}.json`);
  const spec = join(tmpdir(), `peregrine-bert-inputs-${process.pid}.json`);
  writeFileSync(spec, JSON.stringify({ configs: Object.fromEntries(configs.map((c) => [c, CONFIGS[c]])), inputs, vocab: VOCAB, positions: POSITIONS }));
  try {
    execFileSync('python3', [script, '--spec', spec, '--dtype', dtype, '--reps', String(reps), '--out', out], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 540_000 });
  } catch (err) {
    process.stderr.write(`peers failed: ${(err as Error).message}\n`);
  }
  if (!existsSync(out)) return [];
  const data = JSON.parse(readFileSync(out, 'utf8')) as { results: { engine: string; config: string; input: string; ms: number | null; tokens: number; error: string | null }[] };
  return data.results.map((r) => ({ engine: r.engine, config: r.config, input: r.input, ms: r.ms, tokens: r.tokens, note: r.error ? `error: ${r.error}` : '' }));
}
