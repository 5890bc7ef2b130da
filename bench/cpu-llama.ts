// CPU decode of a Llama configuration (random bf16 weights, computed in f32), whole and tensor-parallel: N ranks as
// threads of this process (this thread rank 0, bench/cpu-llama-rank.ts the others), each holding 1/N of every layer.
//   npm run bench -- cpu-llama [--ranks 1,2] [--config 160M] [--batch 1] [--prompt 32] [--new 32]
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { abortGroup, createGroup, type GroupHandle } from '../src/backends/cpu/thread-group.js';
import { loadModelDir } from '../src/engine/load.js';
import { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { FIXTURES, type BenchArgs, type BenchResult } from './common.js';
import { CONFIGS, randomLlama } from './llama.js';

export interface CpuLlamaJob { config: string; batch: number; prompt: number; newTokens: number }

/** Loads the job's model as rank `rank` of `handle` (or whole), warms up, and times one generation: prefill and mean decode ms. */
export async function runCpuLlama(job: CpuLlamaJob, tp?: { group: GroupHandle; rank: number }): Promise<{ prefillMs: number; decodeMs: number }> {
  const tokenizer = Tokenizer.fromDir(join(FIXTURES, 'tokenizers', 'llama2-style'));
  const maxSeqLen = job.prompt + job.newTokens + 16;
  const m = await loadModelDir(randomLlama(job.config, 'bf16'), tokenizer, { device: 'cpu', maxBatch: job.batch, maxSeqLen, kvBlocks: job.batch * (Math.ceil(maxSeqLen / 16) + 1), tensorParallel: tp });
  if (m.kind !== 'causal-lm') throw new Error('internal: not a causal LM');
  const gen = m.generator;
  const prompts = Array.from({ length: job.batch }, (_, b) => Array.from({ length: job.prompt }, (_, i) => (b * 7919 + i * 104729) % 950));
  await gen.generateIds(prompts, { maxNewTokens: 2, stopAtEos: false });
  const times: number[] = [];
  let last = performance.now();
  await gen.generateIds(prompts, {
    maxNewTokens: job.newTokens, stopAtEos: false,
    onToken: (e) => {
      if (e.index !== job.batch - 1) return;
      const now = performance.now();
      times.push(now - last);
      last = now;
    },
  });
  gen.dispose();
  const steps = times.slice(1);
  return { prefillMs: times[0], decodeMs: steps.reduce((a, b) => a + b, 0) / steps.length };
}

export async function cpuLlama(args: BenchArgs): Promise<BenchResult> {
  const job: CpuLlamaJob = { config: args.string('config') ?? '160M', batch: args.int('batch', 1), prompt: args.int('prompt', 32), newTokens: args.int('new', 32) };
  if (!CONFIGS[job.config]) throw new Error(`--config ${job.config}: one of ${Object.keys(CONFIGS).join(', ')}`);
  const rows: Record<string, string | number>[] = [];
  let whole = 0;
  for (const size of args.list('ranks', ['1', '2']).map(Number)) {
    const group = createGroup(size);
    const workers = Array.from({ length: size - 1 }, (_, i) => new Promise<void>((resolve, reject) => {
      const w = new Worker(new URL('./cpu-llama-rank.js', import.meta.url), { workerData: { job, handle: group, rank: i + 1 } });
      w.on('error', (err) => { abortGroup(group, i + 1); reject(err); });
      w.on('exit', () => resolve());
    }));
    const r = await runCpuLlama(job, size > 1 ? { group, rank: 0 } : undefined).catch((err) => {
      abortGroup(group, 0);
      throw err;
    });
    await Promise.all(workers);
    whole ||= r.decodeMs;
    rows.push({ ranks: size, 'prefill ms': r.prefillMs, 'decode ms/step': r.decodeMs, 'decode tokens/s': (1000 * job.batch) / r.decodeMs, 'speed-up': `${(whole / r.decodeMs).toFixed(2)}x` });
  }
  const c = CONFIGS[job.config];
  return {
    name: 'cpu-llama',
    config: { model: `Llama ${job.config} (hidden ${c.hidden}, ${c.layers} layers, ${c.heads} / ${c.kvHeads} heads, MLP ${c.inner}, vocabulary ${c.vocab}), random bf16 weights, f32 compute`,
      ...job, cpu: `${cpus().length} x ${cpus()[0]?.model}`, node: process.version, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim() },
    rows,
    notes: ['ranks: threads of one process, each holding 1/ranks of every layer, the embedding and the LM head, meeting at two all-reduces a layer. Speed-up: decode against 1 rank (the first row).'],
  };
}
