#!/usr/bin/env node
// The peregrine command: generate, embed, classify, inspect.
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEVICES, DTYPES, type Device, type FloatDType } from '../backends/select.js';
import { PeregrineError } from '../errors.js';
import { inspectModel, loadEmbedder, loadGenerator, type LoadOptions } from '../engine/load.js';
import type { GenerateOptions } from '../engine/generation.js';
import { formatInspection } from './inspect.js';
import { readInputs } from './inputs.js';

function number(name: string, check: (x: number) => boolean, want: string) {
  return (value: string): number => {
    const x = Number(value);
    if (value.trim() === '' || !Number.isFinite(x) || !check(x)) throw new InvalidArgumentError(`${name} must be ${want}.`);
    return x;
  };
}
const int = (name: string, min: number) => number(name, (x) => Number.isSafeInteger(x) && x >= min, `a whole number >= ${min}`);

interface CommonFlags {
  model: string;
  device: Device;
  dtype?: FloatDType;
  offline?: boolean;
  maxBatch?: number;
  maxSeqLen?: number;
}

function loadOptions(o: CommonFlags): LoadOptions {
  return { device: o.device, dtype: o.dtype, offline: o.offline, maxBatch: o.maxBatch, maxSeqLen: o.maxSeqLen };
}

function common(cmd: Command): Command {
  return cmd
    .requiredOption('-m, --model <dir|hub-id>', 'a Hugging Face model directory, or a hub id (downloaded into ~/.cache/peregrine or $PEREGRINE_CACHE)')
    .addOption(new Option('-d, --device <device>', 'where to run (auto: the GPU when there is one)').choices(DEVICES).default('auto'))
    .addOption(new Option('--dtype <dtype>', 'compute dtype on the GPU (default f16; the CPU computes in f32)').choices(DTYPES))
    .option('--offline', 'use only the local cache for hub ids');
}

function writeOut(s: string): void {
  process.stdout.write(s);
}

function buildProgram(): Command {
  const program = new Command('peregrine')
    .description('Transformer inference for Node.js: GPT-2 generation and BERT embeddings from Hugging Face checkpoints')
    .configureOutput({ outputError: (str, write) => write(`peregrine: ${str}`) });

  common(program.command('generate').description('generate text from a prompt, streamed to stdout'))
    .requiredOption('-p, --prompt <text...>', 'prompt text (several prompts run as one batch)')
    .option('-n, --max-new-tokens <n>', 'tokens to generate per prompt', int('--max-new-tokens', 1), 32)
    .option('-t, --temperature <t>', 'sampling temperature; 0 is greedy (default: greedy, or 1 with --top-k/--top-p)', number('--temperature', (x) => x >= 0, 'a number >= 0'))
    .option('-k, --top-k <k>', 'sample among the k most likely tokens (0: off)', int('--top-k', 0))
    .option('--top-p <p>', 'sample among the most likely tokens holding probability p (1: off)', number('--top-p', (x) => x > 0 && x <= 1, 'in (0, 1]'))
    .option('-s, --seed <n>', 'sampling seed: the same seed gives the same tokens', int('--seed', 0))
    .option('--ignore-eos', 'keep generating past the end-of-sequence token')
    .option('--json', 'print one JSON object {"ids": [...], "text": "..."} per prompt instead of streaming text')
    .option('--max-batch <n>', 'plan memory at load for this many sequences', int('--max-batch', 1))
    .option('--max-seq-len <n>', 'plan memory at load for sequences of this many tokens', int('--max-seq-len', 1))
    .action(async (o: CommonFlags & { prompt: string[]; maxNewTokens: number; temperature?: number; topK?: number; topP?: number; seed?: number; ignoreEos?: boolean; json?: boolean }) => {
      const gen = await loadGenerator(o.model, loadOptions(o));
      const opts: GenerateOptions = { maxNewTokens: o.maxNewTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, seed: o.seed, stopAtEos: !o.ignoreEos };
      if (o.json) {
        const results = await gen.generate(o.prompt, opts);
        for (const r of results) writeOut(JSON.stringify({ ids: r.ids, text: r.text }) + '\n');
      } else if (o.prompt.length === 1) {
        for await (const e of gen.stream(o.prompt, opts)) writeOut(e.text);
        writeOut('\n');
      } else {
        const results = await gen.generate(o.prompt, opts);
        results.forEach((r, i) => writeOut(`[${i}] ${r.text}\n`));
      }
    });

  common(program.command('embed').description('print sentence embeddings as JSON, one vector per input line'))
    .argument('[texts...]', 'texts to embed (default: one per line of stdin)')
    .addOption(new Option('--pooling <mode>', 'how to pool token states into one vector').choices(['cls', 'mean']).default('mean'))
    .option('--normalize', 'scale each vector to unit length')
    .action(async (texts: string[], o: CommonFlags & { pooling: 'cls' | 'mean'; normalize?: boolean }) => {
      const inputs = await readInputs(texts);
      const emb = await loadEmbedder(o.model, loadOptions(o));
      for (const v of emb.embed(inputs, { pooling: o.pooling, normalize: o.normalize })) writeOut(JSON.stringify(Array.from(v)) + '\n');
    });

  common(program.command('classify').description('sequence classification: label and scores as JSON, one line per input'))
    .argument('[texts...]', 'texts to classify (default: one per line of stdin)')
    .action(async (texts: string[], o: CommonFlags) => {
      const inputs = await readInputs(texts);
      const emb = await loadEmbedder(o.model, loadOptions(o));
      for (const c of emb.classify(inputs)) writeOut(JSON.stringify(c) + '\n');
    });

  common(program.command('inspect').description('architecture, parameter count, dtypes and the memory plan'))
    .option('--max-batch <n>', 'plan memory for this many sequences', int('--max-batch', 1), 1)
    .option('--max-seq-len <n>', 'plan memory for sequences of this many tokens (default: the model maximum)', int('--max-seq-len', 1))
    .option('--json', 'print JSON')
    .action(async (o: CommonFlags & { json?: boolean }) => {
      const r = await inspectModel(o.model, loadOptions(o));
      writeOut(o.json ? JSON.stringify(r, null, 2) + '\n' : formatInspection(r));
    });

  return program;
}

async function main(argv: string[]): Promise<number> {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof PeregrineError) {
      process.stderr.write(`peregrine: error: ${err.message}\n`);
      return 1;
    }
    const e = err as Error;
    process.stderr.write(`peregrine: internal error: ${e?.message ?? String(err)} (this is a bug; set PEREGRINE_DEBUG=1 for the stack trace)\n`);
    if (process.env.PEREGRINE_DEBUG) process.stderr.write(`${e?.stack}\n`);
    return 70;
  }
}

main(process.argv).then((code) => {
  process.exitCode = code;
});
