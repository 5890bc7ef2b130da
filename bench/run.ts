// npm run bench -- <name> [options]: runs one benchmark and prints its table and JSON.
import { BenchArgs, markdownTable, type BenchResult } from './common.js';
import { beam } from './beam.js';
import { bert } from './bert.js';
import { cpuAttention } from './cpu-attention.js';
import { cpuCollectives } from './cpu-collectives.js';
import { cpuGpt2 } from './cpu-gpt2.js';
import { cpuLlama } from './cpu-llama.js';
import { gpt2 } from './gpt2.js';
import { attention } from './kernels/flash.js';
import { FAMILIES, kernelBench } from './kernels/index.js';
import { qgemv } from './kernels/quant.js';
import { llama } from './llama.js';
import { quant } from './quant.js';
import { quantPerplexity } from './quant-perplexity.js';
import { seq2seq } from './seq2seq.js';
import { serve } from './serve.js';
import { serving } from './serving.js';

const BENCHES: Record<string, (args: BenchArgs) => Promise<BenchResult>> = {
  attention,
  beam,
  bert,
  'cpu-attention': cpuAttention,
  'cpu-collectives': cpuCollectives,
  'cpu-gpt2': cpuGpt2,
  'cpu-llama': cpuLlama,
  gpt2,
  llama,
  qgemv,
  quant,
  'quant-perplexity': quantPerplexity,
  seq2seq,
  serve,
  serving,
  // the kernel families' micro-benchmarks (bench/kernels/): all in one run, or one family
  kernels: kernelBench(),
  ...Object.fromEntries(Object.keys(FAMILIES).map((f) => [`kernels/${f}`, kernelBench(f)])),
  'kernels/flash': attention,
  'kernels/quant': qgemv,
};

const [name, ...rest] = process.argv.slice(2);
const bench = BENCHES[name];
if (!bench) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [options]\n`);
  process.exit(2);
}
const result = await bench(new BenchArgs(rest));
process.stdout.write(`## ${result.name}\n\n${JSON.stringify(result.config)}\n\n${markdownTable(result.rows)}\n`);
for (const n of result.notes ?? []) process.stdout.write(`\n${n}\n`);
process.stdout.write(`\n${JSON.stringify(result)}\n`);
