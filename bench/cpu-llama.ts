// CPU decode of a Llama configuration (random bf16 weights, computed in f32), whole, tensor- and pipeline-parallel as
// users run it: `loadGenerator(dir, { device: 'cpu', tensorParallel: t, pipelineParallel: s })`, this thread rank 0
// and t * s - 1 worker-thread ranks, each holding 1/t of every layer of its stage's (src/engine/ranks.ts); or over n
// processes of this host (`nodes`), the others started as `peregrine generate --node-rank k` and joined over TCP.
//   npm run bench -- cpu-llama [--layouts 1x1,2x1,1x2,2x1@2] [--config 160M] [--batch 1] [--prompt 32] [--new 32]
//     [--quantize int8|int4|fp8]
// (a layout is tensor-parallel ranks x pipeline stages, then @ processes, 1 if left out; tensor parallelism refuses
// quantized weights)
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadGenerator } from '../src/engine/load.js';
import type { QuantizeMethod } from '../src/loaders/quantize-methods.js';
import { writeSafetensorsStreaming } from '../src/loaders/safetensors-write.js';
import { FIXTURES, roundPrompts, timedGenerations, type BenchArgs, type BenchResult } from './common.js';
import { CONFIGS, randomLlama } from './llama.js';

/** The random checkpoint of `config` as files (worker ranks open a directory), with a 951-token tokenizer. */
function writeRandomLlama(config: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'peregrine-cpu-llama-'));
  const md = randomLlama(config, 'bf16');
  writeSafetensorsStreaming(join(dir, 'model.safetensors'), md.weights.names().map((n) => md.weights.info(n)), (t, bytes) => bytes.set(md.weights.readBytes(t.name)));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(md.config));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(FIXTURES, 'tokenizers', 'llama2-style', f), join(dir, f));
  return dir;
}

/** `peregrine generate --node-rank k` on `dir`: a process of the group, joining this one on `port`. */
function follower(dir: string, rank: number, nodes: number, port: number, flags: string[]): ChildProcess {
  const cli = new URL('../src/cli/main.js', import.meta.url).pathname;
  return spawn(process.execPath, [cli, 'generate', '-m', dir, '--device', 'cpu', ...flags, '--nodes', String(nodes), '--node-rank', String(rank), '--master-port', String(port)],
    { stdio: ['ignore', 'ignore', 'inherit'] });
}

export async function cpuLlama(args: BenchArgs): Promise<BenchResult> {
  const config = args.string('config') ?? '160M', batch = args.int('batch', 1), prompt = args.int('prompt', 32), newTokens = args.int('new', 32);
  const quantize = args.string('quantize') as QuantizeMethod | undefined;
  const c = CONFIGS[config];
  if (!c) throw new Error(`--config ${config}: one of ${Object.keys(CONFIGS).join(', ')}`);
  const dir = writeRandomLlama(config);
  const rows: Record<string, string | number>[] = [];
  try {
    const maxSeqLen = prompt + newTokens + 16;
    let whole = 0;
    for (const layout of args.list('layouts', ['1x1', '2x1', '1x2'])) {
      const m = /^(\d+)x(\d+)(?:@(\d+))?$/.exec(layout);
      if (!m) throw new Error(`--layouts ${layout}: tensor-parallel ranks x pipeline stages, then @ processes if more than one, such as 2x1 or 2x1@2`);
      const [tensor, stages, processes] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 1)];
      const kvBlocks = batch * (Math.ceil(maxSeqLen / 16) + 1), port = 29500 + Math.floor(Math.random() * 1000);
      const followers = Array.from({ length: processes - 1 }, (_, k) => follower(dir, k + 1, processes, port,
        ['--tensor-parallel', tensor, '--pipeline-parallel', stages, '--max-batch', batch, '--max-seq-len', maxSeqLen, '--kv-blocks', kvBlocks, ...(quantize ? ['--quantize', quantize] : [])].map(String)));
      const gen = await loadGenerator(dir, { device: 'cpu', tensorParallel: tensor, pipelineParallel: stages, maxBatch: batch, maxSeqLen, kvBlocks, quantize,
        nodes: processes > 1 ? { count: processes, rank: 0, masterPort: port } : undefined });
      const r = await timedGenerations(gen, roundPrompts(batch, prompt, 950), { maxNewTokens: newTokens, stopAtEos: false });
      gen.dispose();
      for (const f of followers) await new Promise((resolve) => f.on('close', resolve));
      const median = (xs: number[]) => xs.sort((a, b) => a - b)[1];
      const decodeMs = median(r.map((x) => x.decodeMs));
      whole ||= decodeMs;
      rows.push({ 'tensor-parallel': tensor, 'pipeline stages': stages, processes, 'prefill ms': median(r.map((x) => x.prefillMs)), 'decode ms/step': decodeMs,
        'decode tokens/s': (1000 * batch) / decodeMs, 'speed-up': `${(whole / decodeMs).toFixed(2)}x` });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    name: 'cpu-llama',
    config: { model: `Llama ${config} (hidden ${c.hidden}, ${c.layers} layers, ${c.heads} / ${c.kvHeads} heads, MLP ${c.inner}, vocabulary ${c.vocab}), random bf16 weights${quantize ? `, --quantize ${quantize}` : ''}, f32 compute`,
      batch, prompt, newTokens, cpu: `${cpus().length} x ${cpus()[0]?.model}`, node: process.version, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim() },
    rows,
    notes: ['Ranks: threads of one process, or of `processes` processes of this host joined over TCP on localhost (every row between ranks of two processes '
      + 'crosses a socket through each process\'s bridge thread). Tensor-parallel ranks hold 1/t of every layer of their stage (and of the embedding and the LM head), '
      + 'meeting at two all-reduces a layer; pipeline stages hold 1/s of the layers and pass a decode step\'s rows on in s micro-batches. '
      + 'Median of 3 timed calls after a warm-up. Speed-up: decode against the first row.'],
  };
}
