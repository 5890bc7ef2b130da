// The encoder-decoder fixtures' Hugging Face generate() runs (test/fixtures/*/reference.json, made by
// tools/reference/make_seq2seq_fixtures.py) as Peregrine requests, and the check of a generator against them.
import assert from 'node:assert/strict';
import type { GenerateOptions } from '../../src/index.js';
import type { TextGenerator } from '../../src/engine/generation.js';

export interface Run {
  name: string;
  kwargs: Record<string, number | boolean>;
  sequences: number[][];
  scores?: number[];
  logits?: number[][];
}
export interface Reference {
  sources: { text: string; ids: number[]; runs: Run[] }[];
}

/** generate()'s kwargs as Peregrine's options. */
export function options(k: Run['kwargs']): GenerateOptions {
  const o: GenerateOptions = {
    maxNewTokens: k.max_new_tokens as number, numBeams: k.num_beams as number | undefined, numReturnSequences: k.num_return_sequences as number | undefined,
    noRepeatNgramSize: k.no_repeat_ngram_size as number | undefined, lengthPenalty: k.length_penalty as number | undefined,
    repetitionPenalty: k.repetition_penalty as number | undefined, minNewTokens: k.min_new_tokens as number | undefined,
    forcedEosTokenId: k.forced_eos_token_id as number | undefined, earlyStopping: k.early_stopping as boolean | undefined,
  };
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

export function logSoftmax(x: number[]): number[] {
  const m = Math.max(...x);
  const lse = m + Math.log(x.reduce((a, v) => a + Math.exp(v - m), 0));
  return x.map((v) => v - lse);
}

/**
 * Every run of every source (all sources of a run in one call, so that they share batches): ids identical, greedy
 * log-probs (the drawn token's and the three best of the first steps) and beam scores within `tol`.
 */
export async function checkAll(g: TextGenerator, ref: Reference, tol: number): Promise<void> {
  for (const name of ref.sources[0].runs.map((r) => r.name)) {
    const runs = ref.sources.map((s) => s.runs.find((r) => r.name === name)!);
    const o = options(runs[0].kwargs);
    const greedy = !o.numBeams || o.numBeams === 1;
    const results = await g.generateIds(ref.sources.map((s) => s.ids), greedy ? { ...o, topLogprobs: 3 } : o);
    results.forEach((res, i) => {
      const want = runs[i], where = `${name}, source ${i}`;
      if (greedy) {
        assert.deepEqual(res.ids, want.sequences[0], where);
        // the drawn token's log-prob and the three best under the raw logits of the first steps
        want.logits!.forEach((logits, step) => {
          const lp = logSoftmax(logits);
          assert.ok(Math.abs(res.logprobs![step] - lp[res.ids[step]]) < tol, `${where}, step ${step}: log-prob ${res.logprobs![step]} vs ${lp[res.ids[step]]}`);
          for (const t of res.topLogprobs![step]) assert.ok(Math.abs(t.logprob - lp[t.id]) < tol, `${where}, step ${step}: token ${t.id}`);
        });
      } else {
        // Hugging Face pads finished beams to the longest; Peregrine returns each beam's own tokens
        const seqs = res.sequences!;
        assert.equal(seqs.length, want.sequences.length, where);
        seqs.forEach((s, j) => {
          assert.deepEqual(s.ids, want.sequences[j].slice(0, s.ids.length), `${where}, beam ${j}`);
          assert.ok(Math.abs(s.score - want.scores![j]) < tol, `${where}, beam ${j}: score ${s.score} vs ${want.scores![j]}`);
        });
      }
    });
  }
}
