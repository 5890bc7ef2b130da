// Prompt log-probs and perplexity on the GPU against Hugging Face (test/fixtures/perplexity, made by
// tools/reference/make_perplexity_fixture.py): fp32 within 1e-3, fp16 within 2e-2 and bf16 within 8e-2 per token and 1e-2
// relative in mean NLL; passes that score more rows than the logits buffer holds, in chunks.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadGenerator } from '../../src/index.js';
import { perplexity } from '../../src/engine/perplexity.js';
import { fixture, FIXTURES, reference } from '../helpers/fixtures.js';
import { noGpu } from './helpers.js';

const skip = noGpu();
interface Run { context: number | null; stride: number | null; resolved: [number, number]; nll: number; scored: number }
interface ModelRef { ids: number[]; prompt_logprobs: (number | null)[]; runs: Run[] }
const ref = reference<{ models: Record<string, ModelRef> }>('perplexity');
// bf16 keeps 8 bits of mantissa: log-probs near -10 move by a few hundredths
const TOL = { f32: 1e-3, f16: 2e-2, bf16: 8e-2 } as const;

for (const name of ['llama-tiny', 'gpt2-tiny']) {
  describe(`${name}: prompt log-probs and perplexity on the GPU`, { skip: skip ?? false }, () => {
    const m = ref.models[name];
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      test(dtype, async () => {
        const gen = await loadGenerator(fixture(name), { device: 'cuda', dtype, maxBatch: 4, prefillChunk: 24 });
        const prompt = m.ids.slice(0, m.prompt_logprobs.length);
        const [r] = await gen.generateIds([prompt], { maxNewTokens: 2, stopAtEos: false, promptLogprobs: true, topLogprobs: 2 });
        let worst = 0;
        r.promptLogprobs!.forEach((lp, i) => {
          if (i === 0) return assert.equal(lp, null);
          worst = Math.max(worst, Math.abs(lp! - m.prompt_logprobs[i]!));
        });
        assert.ok(worst <= TOL[dtype], `worst prompt log-prob error ${worst} > ${TOL[dtype]}`);
        const ids = gen.tokenizer.encode(readFileSync(join(FIXTURES, 'perplexity', 'text.txt'), 'utf8'));
        for (const run of m.runs) {
          const p = await perplexity(gen, ids, { context: run.context ?? undefined, stride: run.stride ?? undefined });
          assert.equal(p.scored, run.scored);
          const rel = Math.abs(p.nll - run.nll) / run.nll;
          assert.ok(rel <= (dtype === 'f32' ? 1e-4 : 1e-2), `${run.resolved}: nll ${p.nll} vs ${run.nll}`);
        }
        gen.dispose();
      });
    }
  });
}
