// The accuracy each quantization method costs a trained model: perplexity over a text, sliding window (engine/perplexity.ts),
// for the model as it is and quantized each way, on one device, and the difference from the unquantized baseline.
//   npm run bench -- quant-perplexity --model DIR --file TEXT [--calibration TEXT] [--methods int8,int4,fp8,w8a8,gptq]
//     [--device cuda|cpu] [--context N] [--stride N] [--separator '<|endoftext|>'] [--gguf FILE] [--group-size G] [--sequential] [--out-dir DIR]
// Made for stories260K (tools/reference/make_stories260k.py writes DIR). Windows: the first model's positions less one
// (511 for stories260K) and half that, unless given, the same for every run. With --separator the text is split into
// documents there, each tokenized as the tokenizer does by default (a BOS token first) and the ids concatenated, as
// llama2.c laid out its training data. Baseline: fp16 on the GPU (f32 alongside it), f32 on the CPU. int8, int4 and
// fp8 are --quantize at load; w8a8 and gptq are SmoothQuant and GPTQ checkpoints made by `peregrine quantize` from
// --calibration (which should not be the measured text). --gguf: a GGUF file of the same model, measured in the baseline's dtype, to show
// that DIR computes what the file does.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TextGenerator } from '../src/engine/generation.js';
import { loadGenerator } from '../src/engine/load.js';
import { perplexity, type PerplexityResult } from '../src/engine/perplexity.js';
import { gptq } from '../src/engine/gptq.js';
import { smoothQuant } from '../src/engine/smoothquant.js';
import type { QuantizeMethod } from '../src/loaders/quantize-methods.js';
import type { BenchArgs, BenchResult } from './common.js';

type Method = QuantizeMethod | 'w8a8' | 'gptq';

/** The text's token ids: whole, or its documents (split at `separator`) each tokenized on its own, concatenated. */
function tokenize(gen: TextGenerator, text: string, separator: string | undefined): number[] {
  if (!separator) return gen.tokenizer.encode(text);
  return text.split(separator).map((d) => d.trim()).filter(Boolean).flatMap((d) => gen.tokenizer.encode(d));
}

interface Row { model: string; weights: string; dtype: string; result: PerplexityResult; seconds: number }

export async function quantPerplexity(args: BenchArgs): Promise<BenchResult> {
  const model = args.string('model'), file = args.string('file');
  if (!model || !file) throw new Error('quant-perplexity needs --model DIR and --file TEXT');
  const device = (args.string('device') ?? 'cuda') as 'cuda' | 'cpu';
  const methods = args.list('methods', device === 'cuda' ? ['int8', 'int4', 'fp8', 'w8a8'] : ['int8', 'int4', 'w8a8']) as Method[];
  const calibration = args.string('calibration'), gguf = args.string('gguf'), separator = args.string('separator');
  if ((methods.includes('w8a8') || methods.includes('gptq')) && !calibration) throw new Error('w8a8 and gptq need --calibration TEXT (another text than --file)');
  const text = readFileSync(file, 'utf8');
  const baseDtype = device === 'cuda' ? 'f16' : 'f32';
  const runs: { model: string; weights: string; dtype: 'f16' | 'f32'; quantize?: QuantizeMethod }[] = [{ model, weights: 'as stored', dtype: baseDtype }];
  if (device === 'cuda') runs.push({ model, weights: 'as stored', dtype: 'f32' });
  if (gguf) runs.push({ model: gguf, weights: 'as stored (GGUF file)', dtype: baseDtype });
  const rows: Row[] = [];
  // the first model's windows for every run (a GGUF file may declare more positions than the directory)
  let windows: { context: number; stride: number } | null = null;
  // the checkpoints `peregrine quantize` writes, calibrated on --calibration
  const made = mkdtempSync(join(tmpdir(), 'peregrine-quantized-'));
  try {
    for (const method of methods) {
      if (method === 'w8a8') {
        await smoothQuant(model, readFileSync(calibration!, 'utf8'), join(made, method));
        runs.push({ model: join(made, method), weights: 'w8a8 (SmoothQuant, alpha 0.5)', dtype: baseDtype });
      } else if (method === 'gptq') {
        const group = args.string('group-size') === undefined ? undefined : args.int('group-size', 1), sequential = args.flag('sequential');
        const r = await gptq(model, readFileSync(calibration!, 'utf8'), join(made, method), { group, sequential });
        runs.push({ model: join(made, method), weights: `gptq (int4, groups of ${r.group}, act-order${sequential ? ', a pass per layer' : ''})`, dtype: baseDtype });
      } else {
        runs.push({ model, weights: method, dtype: baseDtype, quantize: method });
      }
    }
    for (const run of runs) {
      const gen = await loadGenerator(run.model, { device, dtype: run.dtype, quantize: run.quantize });
      try {
        const ids = tokenize(gen, text, separator);
        const context = args.int('context', gen.model.info.maxPositions - 1);
        windows ??= { context, stride: args.int('stride', Math.floor(context / 2)) };
        const t0 = performance.now();
        const result = await perplexity(gen, ids, windows);
        rows.push({ model: run.model, weights: run.weights, dtype: run.dtype, result, seconds: (performance.now() - t0) / 1000 });
      } finally {
        gen.dispose();
      }
    }
  } finally {
    rmSync(made, { recursive: true, force: true });
  }
  const base = rows[0].result;
  const table = rows.map((r) => ({
    weights: r.weights, dtype: r.dtype, perplexity: r.result.perplexity.toFixed(4), 'mean NLL (nats)': r.result.nll.toFixed(6),
    [`difference from ${baseDtype}`]: r === rows[0] ? '' : `${(r.result.perplexity - base.perplexity >= 0 ? '+' : '')}${(r.result.perplexity - base.perplexity).toFixed(4)} (${((100 * (r.result.perplexity - base.perplexity)) / base.perplexity).toFixed(2)}%)`,
    'tokens scored': r.result.scored, seconds: r.seconds,
  }));
  const result: BenchResult = {
    name: 'quant-perplexity',
    config: {
      device, model, file, tokens: base.tokens, context: base.context, stride: base.stride, windows: base.windows, separator: separator ?? null, calibration: calibration ?? null,
      command: `npm run bench -- quant-perplexity ${process.argv.slice(3).join(' ')}`.trim(),
    },
    rows: table,
    notes: [
      'perplexity = exp(mean negative log-likelihood of the scored tokens), Hugging Face\'s sliding window: windows of --context tokens every --stride tokens, each scoring the tokens no earlier window scored.',
      'int8: Q8_0 (an f16 scale per 32 weights); int4: grouped int4, round to nearest (an f16 scale and a zero per group of the largest of 128, 64, 32 that divides the row); fp8: E4M3, an f32 scale per output channel; w8a8: SmoothQuant int8 weights per output channel, int8 activations per token; gptq: GPTQ int4, groups of the largest of 128, 64, 32 that divides every block matrix\'s inputs (or --group-size), act-order, dampening 0.01, one calibration pass (one per layer with --sequential). Blocks\' linear layers only; the embedding and the LM head stay as stored.',
    ],
  };
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'quant-perplexity.json'), JSON.stringify({ ...result, raw: rows }, null, 1));
  }
  return result;
}
