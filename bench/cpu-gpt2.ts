// CPU decode speed of GPT-2 124M (random weights): prefill a prompt, then time each decode step.
//   npm run bench -- cpu-gpt2 [--new-tokens N] [--prompt-tokens N] [--batch N]
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadGenerator } from '../src/index.js';
import { writeRandomGpt2 } from '../test/helpers/random-model.js';
import { FIXTURES, type BenchArgs, type BenchResult } from './common.js';

export async function cpuGpt2(args: BenchArgs): Promise<BenchResult> {
  const newTokens = args.int('new-tokens', 32), promptTokens = args.int('prompt-tokens', 32), batch = args.int('batch', 1);
  const dir = mkdtempSync(join(tmpdir(), 'peregrine-bench-'));
  try {
    writeRandomGpt2(dir, { vocab: 50257, hidden: 768, layers: 12, heads: 12, positions: 1024 }, join(FIXTURES, 'tokenizers', 'gpt2'), 'F16');
    const gen = await loadGenerator(dir, { device: 'cpu', maxBatch: batch, maxSeqLen: promptTokens + newTokens });
    const prompts = Array.from({ length: batch }, (_, b) => Array.from({ length: promptTokens }, (_, i) => (b * 7919 + i * 104729) % 50257));
    await gen.generateIds(prompts, { maxNewTokens: 2, stopAtEos: false }); // warm-up: JIT and caches
    const times: number[] = [];
    let last = performance.now();
    const t0 = last;
    await gen.generateIds(prompts, {
      maxNewTokens: newTokens, stopAtEos: false,
      onToken: (e) => {
        if (e.index !== batch - 1) return;
        const now = performance.now();
        times.push(now - last);
        last = now;
      },
    });
    const total = performance.now() - t0;
    const prefill = times[0];
    const steps = times.slice(1).sort((a, b) => a - b);
    const decodeMs = steps.reduce((a, b) => a + b, 0) / steps.length;
    return {
      name: 'cpu-gpt2',
      config: { model: 'GPT-2 124M, random weights, fp32 compute', batch, promptTokens, newTokens, cpu: `${cpus().length} x ${cpus()[0]?.model}`, node: process.version },
      rows: [{
        engine: 'peregrine (cpu)',
        'prefill ms': prefill,
        'decode ms/step (mean)': decodeMs,
        'decode ms/step (median)': steps[steps.length >> 1],
        'decode tokens/s': (1000 * batch) / decodeMs,
        'end-to-end tokens/s': (1000 * batch * newTokens) / total,
      }],
      notes: ['No CPU peer runs here: this machine has no PyTorch or ONNX Runtime model to compare with.'],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
