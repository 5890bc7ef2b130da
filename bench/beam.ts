// Beam search on the GPU: Peregrine against Hugging Face generate(num_beams) (bench/peers/beam_hf.py) in the
// same run. GPT-2 with random fp16 weights (1.5B configuration by default), --batch prompts of --prompt
// tokens, --beams beams, exactly --new new tokens (min new tokens = max new tokens, so no beam ends early).
//   npm run bench -- beam [--config 1.5B] [--device cuda|cpu] [--batch 8] [--beams 4] [--prompt 128] [--new 128] [--no-peers] [--out-dir DIR]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CudaBackend } from '../src/backends/cuda/backend.js';
import { loadGenerator } from '../src/index.js';
import { ROOT, randomGpt2Dir, timeRuns, type BenchArgs, type BenchResult } from './common.js';

export async function beam(args: BenchArgs): Promise<BenchResult> {
  const config = args.string('config') ?? '1.5B';
  const batch = args.int('batch', 8), beams = args.int('beams', 4), promptLen = args.int('prompt', 128), newTokens = args.int('new', 128);
  const dir = randomGpt2Dir(config);
  const device = (args.string('device') ?? 'cuda') as 'cuda' | 'cpu';
  // every request's blocks at once, as the scheduler counts a beam request's (its prompt's, and per beam its new tokens' plus one)
  const bs = 16, kvBlocks = batch * (Math.ceil(promptLen / bs) + beams * (Math.ceil(newTokens / bs) + 1)) + 1;
  const gen = await loadGenerator(dir, { device, dtype: device === 'cuda' ? 'f16' : undefined, maxBatch: batch * beams, maxSeqLen: promptLen + newTokens,
    prefillChunk: batch * promptLen, blockSize: bs, kvBlocks });
  const prompts = Array.from({ length: batch }, (_, b) => Array.from({ length: promptLen }, (_, i) => (b * 7919 + i * 104729) % 50257));
  const opts = { numBeams: beams, maxNewTokens: newTokens, minNewTokens: newTokens };
  const warm = Math.min(8, newTokens);
  await gen.generateIds(prompts, { ...opts, maxNewTokens: warm, minNewTokens: warm }); // warm-up: GEMM tuning, graph capture
  const { ms, times, last } = await timeRuns(3, () => gen.generateIds(prompts, opts));
  const steps = last[0].ids.length;
  const deviceName = device === 'cuda' ? (gen.runtime.backend as CudaBackend).device.name : 'cpu';
  gen.dispose();
  const rows: Record<string, string | number>[] = [{
    engine: 'peregrine', model: config, batch, beams, 'new tokens': steps, 'ms per call': ms, 'ms per step': ms / newTokens,
    'tokens/s (best beams)': (batch * newTokens * 1000) / ms, 'peregrine speed-up': '',
  }];
  if (!args.flag('no-peers')) {
    const out = join(tmpdir(), `peregrine-beam-peer-${process.pid}.json`);
    try {
      execFileSync('python3', [join(ROOT, 'bench', 'peers', 'beam_hf.py'), '--config', config, '--batch', String(batch), '--beams', String(beams),
        '--prompt', String(promptLen), '--new', String(newTokens), '--out', out], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 540_000 });
    } catch (err) {
      process.stderr.write(`peer failed: ${(err as Error).message}\n`);
    }
    if (existsSync(out)) {
      const p = JSON.parse(readFileSync(out, 'utf8')) as { ms: number; generated: number; transformers: string };
      rows.push({
        engine: `hf generate() (transformers ${p.transformers})`, model: config, batch, beams, 'new tokens': p.generated, 'ms per call': p.ms,
        'ms per step': p.ms / newTokens, 'tokens/s (best beams)': (batch * newTokens * 1000) / p.ms, 'peregrine speed-up': `${(p.ms / ms).toFixed(1)}x`,
      });
    }
  }
  const result: BenchResult = {
    name: 'beam',
    config: { device: deviceName, model: `GPT-2 ${config}, random fp16 weights`, batch, beams, promptTokens: promptLen, newTokens, command: `npm run bench -- beam ${process.argv.slice(3).join(' ')}`.trim() },
    rows,
    notes: ['ms per call: the whole generate call (prefill and every step), median of 3 after a warm-up; ms per step = ms per call / new tokens.'],
  };
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'beam.json'), JSON.stringify({ ...result, times }, null, 1));
  }
  return result;
}
