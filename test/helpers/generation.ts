// Shared pieces of the generation tests (CPU and GPU): Hugging Face cases and how to check them, and a
// workload of mixed requests.
import assert from 'node:assert/strict';
import type { GenerateOptions, GenerationResult, TextGenerator } from '../../src/index.js';
import { seededRandom } from '../../src/ops/rng.js';

export interface GenerationCase {
  prompt: number[];
  options: GenerateOptions & { eosTokenId: number[] };
  ids: number[];
  sequences?: number[][];
  scores?: number[];
  logprobs?: number[];
  top?: [number, number][][];
}

/** Checks a result against a case; `tol` bounds log-prob and score errors. */
export function checkCase(c: GenerationCase, r: { ids: number[]; sequences?: { ids: number[]; score: number }[]; logprobs?: number[]; topLogprobs?: { id: number; logprob: number }[][] }, tol: number, what: string): void {
  assert.deepEqual(r.ids, c.ids, `${what}: ids`);
  if (c.sequences) {
    assert.deepEqual(r.sequences!.map((s) => s.ids), c.sequences, `${what}: returned sequences`);
    r.sequences!.forEach((s, i) => assert.ok(Math.abs(s.score - c.scores![i]) <= tol * Math.max(1, Math.abs(c.scores![i])), `${what}: score ${i} ${s.score} vs ${c.scores![i]}`));
  }
  if (c.logprobs) {
    assert.equal(r.logprobs!.length, c.logprobs.length);
    r.logprobs!.forEach((lp, i) => assert.ok(Math.abs(lp - c.logprobs![i]) <= tol, `${what}: logprob ${i} ${lp} vs ${c.logprobs![i]}`));
  }
  if (c.top) {
    r.topLogprobs!.forEach((step, i) => {
      assert.deepEqual(step.map((t) => t.id), c.top![i].map((t) => t[0]), `${what}: top ids at ${i}`);
      step.forEach((t, j) => assert.ok(Math.abs(t.logprob - c.top![i][j][1]) <= tol, `${what}: top logprob ${i}.${j}`));
    });
  }
}

export function caseName(c: GenerationCase): string {
  const { eosTokenId, maxNewTokens, ...rest } = c.options;
  return `${JSON.stringify(rest)} eos ${eosTokenId} (prompt of ${c.prompt.length}, ${maxNewTokens} new)`;
}

export const OPTIONS: GenerateOptions[] = [
  { maxNewTokens: 12 },
  { maxNewTokens: 20, temperature: 0.9, seed: 1 },
  { maxNewTokens: 16, topK: 5, seed: 2 },
  { maxNewTokens: 16, topK: 100, topP: 0.8, seed: 3 },
  { maxNewTokens: 16, topP: 0.5, topPDecay: 0.9, topPMin: 0.2, topPResetIds: [13], seed: 4 },
  { maxNewTokens: 16, minP: 0.1, temperature: 1.5, seed: 5 },
  { maxNewTokens: 16, repetitionPenalty: 1.4, temperature: 0.7, seed: 6 },
  { maxNewTokens: 16, presencePenalty: 1, frequencyPenalty: 0.5 },
  { maxNewTokens: 16, badWords: ['the', ' and'], minNewTokens: 4 },
  { maxNewTokens: 24, stop: ['.', 'a'], temperature: 1, seed: 8 },
  { maxNewTokens: 10, numBeams: 3, numReturnSequences: 2 },
  { maxNewTokens: 10, numBeams: 2, lengthPenalty: 0.5, earlyStopping: true, repetitionPenalty: 1.2 },
  { maxNewTokens: 8, logprobs: true, topLogprobs: 3, temperature: 0.8, seed: 9 },
  { maxNewTokens: 8, eosTokenId: [13, 11], minNewTokens: 2, temperature: 1.2, seed: 10 },
];

export const PROMPTS = [
  'Once upon a time',
  'The quick brown fox jumps over the lazy dog, and then it runs away into the forest where nobody can find it again.',
  'a',
  'Once upon a time there was a little girl who lived in a village near the forest. Whenever she went out, the little girl wore a red riding cloak.',
  'Once upon a time there was a little girl who lived in a village near the forest.',
  '1 2 3 4 5 6 7 8 9 10',
];

/** 64 requests: every option with several prompts, some prompts shared. */
export function workload(n = 64): { prompt: string; options: GenerateOptions }[] {
  return Array.from({ length: n }, (_, i) => ({ prompt: PROMPTS[(i * 5) % PROMPTS.length], options: OPTIONS[i % OPTIONS.length] }));
}


type Work = { prompt: string; options: GenerateOptions }[];

/** Each request of `work` run alone, one after another. */
export async function alone(gen: TextGenerator, work: Work): Promise<GenerationResult[]> {
  const out: GenerationResult[] = [];
  for (const w of work) out.push(await gen.generate(w.prompt, w.options));
  return out;
}

/** Every request of `work` at once, each arriving after a random 0 .. spread ms. */
export function together(gen: TextGenerator, work: Work, seed: number, spread = 40): Promise<GenerationResult[]> {
  const rand = seededRandom(seed);
  return Promise.all(work.map(async (w) => {
    await new Promise((resolve) => setTimeout(resolve, Math.floor(rand() * spread)));
    return gen.generate(w.prompt, w.options);
  }));
}

/** What a request produced, for comparisons: its tokens, why it ended, and its beams. */
export function tokensOf(rs: GenerationResult[]) {
  return rs.map((r) => ({ ids: r.ids, finish: r.finishReason, beams: r.sequences?.map((s) => s.ids) }));
}

/** Greedy or beam search: no draw, so two computations that differ only in rounding give the same tokens. */
export function deterministic(o: GenerateOptions): boolean {
  return (o.temperature ?? (o.topK || (o.topP ?? 1) < 1 || o.minP ? 1 : 0)) === 0;
}
