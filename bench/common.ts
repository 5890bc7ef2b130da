// Shared pieces of the benchmark scripts: arguments, results, and writing them out.
import { existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TextGenerator } from '../src/engine/generation.js';
import { writeRandomGpt2Large } from '../test/helpers/random-model.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');

export const GPT2_CONFIGS: Record<string, { hidden: number; layers: number; heads: number }> = {
  '124M': { hidden: 768, layers: 12, heads: 12 },
  '1.5B': { hidden: 1600, layers: 48, heads: 25 },
  // for trying a benchmark out on the CPU
  tiny: { hidden: 64, layers: 2, heads: 4 },
};

/**
 * A GPT-2 checkpoint of a named configuration with random fp16 weights, written once into the temporary
 * directory and reused by later benchmarks on the same machine.
 */
export function randomGpt2Dir(name: string): string {
  const cfg = GPT2_CONFIGS[name];
  if (!cfg) throw new Error(`unknown config ${name}; use ${Object.keys(GPT2_CONFIGS).join(', ')}`);
  const dir = join(tmpdir(), `peregrine-bench-gpt2-${name}`);
  const done = join(dir, '.complete');
  if (!existsSync(done)) {
    writeRandomGpt2Large(dir, { vocab: 50257, positions: 1024, ...cfg }, join(FIXTURES, 'tokenizers', 'gpt2'));
    writeFileSync(done, '');
  }
  return dir;
}

export interface BenchResult {
  name: string;
  config: Record<string, unknown>;
  rows: Record<string, string | number>[];
  notes?: string[];
}

export class BenchArgs {
  constructor(private readonly argv: string[]) {}

  flag(name: string): boolean {
    return this.argv.includes(`--${name}`);
  }

  string(name: string): string | undefined {
    const i = this.argv.indexOf(`--${name}`);
    return i < 0 ? undefined : this.argv[i + 1];
  }

  list(name: string, fallback: string[]): string[] {
    return this.string(name)?.split(',').filter(Boolean) ?? fallback;
  }

  int(name: string, fallback: number): number {
    const i = this.argv.indexOf(`--${name}`);
    if (i < 0) return fallback;
    const v = Number(this.argv[i + 1]);
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} needs a whole number >= 1`);
    return v;
  }
}

/** Runs `fn` `reps` times (after the caller's warm-up): each wall time, their median and the last result. */
export async function timeRuns<T>(reps: number, fn: () => Promise<T>): Promise<{ ms: number; times: number[]; last: T }> {
  const times: number[] = [];
  let last!: T;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    last = await fn();
    times.push(performance.now() - t0);
  }
  return { ms: [...times].sort((a, b) => a - b)[Math.floor(reps / 2)], times, last };
}

export function markdownTable(rows: Record<string, string | number>[]): string {
  const cols = Object.keys(rows[0] ?? {});
  const cell = (v: string | number) => (typeof v !== 'number' ? v : Number.isInteger(v) || Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
  return [
    `| ${cols.join(' | ')} |`,
    `| ${cols.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${cols.map((c) => cell(r[c] ?? '')).join(' | ')} |`),
  ].join('\n');
}

/**
 * `batch` prompts of `length` token ids below `vocab`, other ones for every `round`: a prompt run again would find its
 * blocks in the prefix cache and skip its prefill, so each timed call takes a round of its own.
 */
export function roundPrompts(batch: number, length: number, vocab: number): (round: number) => number[][] {
  return (round) => Array.from({ length: batch }, (_, b) => Array.from({ length }, (_, i) => (b * 7919 + i * 104729 + round * 15485863) % vocab));
}

/** One generate call: ms to the first sequence's first token, and ms per step after it. */
export async function timeGeneration(gen: TextGenerator, prompts: number[][], opts: { maxNewTokens: number; stopAtEos: boolean }) {
  const t0 = performance.now();
  let first = 0, last = 0;
  await gen.generateIds(prompts, {
    ...opts,
    onToken: (e) => {
      if (e.index !== 0) return;
      last = performance.now();
      if (!first) first = last;
    },
  });
  return { prefillMs: first - t0, decodeMs: (last - first) / (opts.maxNewTokens - 1) };
}

/** A warm-up call on round 0's prompts (GEMM tuning, graph capture), then three timed calls on rounds 1 to 3. */
export async function timedGenerations(gen: TextGenerator, prompts: (round: number) => number[][], opts: { maxNewTokens: number; stopAtEos: boolean }) {
  await gen.generateIds(prompts(0), { ...opts, maxNewTokens: 4 });
  const r = [];
  for (let round = 1; round <= 3; round++) r.push(await timeGeneration(gen, prompts(round), opts));
  return r;
}
