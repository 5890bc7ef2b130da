// The request API against Hugging Face generate() (test/fixtures/<model>/generation.json, made by
// tools/reference/make_generation_refs.py): beam search (ids and scores, several returned sequences, length
// penalties, early stopping), repetition penalty, min-new-tokens, bad words, end tokens, log-probs, and
// presence/frequency penalties against the reference logits processor written there.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadGenerator } from '../src/index.js';
import { fixture, reference } from './helpers/fixtures.js';
import { caseName, checkCase, type GenerationCase } from './helpers/generation.js';

for (const name of ['gpt2-wide', 'gpt2-tiny']) {
  describe(`${name}: the request API matches Hugging Face generate() on the CPU`, async () => {
    const { cases } = reference<{ cases: GenerationCase[] }>(name, 'generation.json');
    const gen = await loadGenerator(fixture(name), { device: 'cpu' });

    test(`${cases.length} cases, one at a time`, async () => {
      for (const c of cases) {
        const [r] = await gen.generateIds([c.prompt], c.options);
        checkCase(c, r, 1e-4, caseName(c));
      }
    });

    test('every case at once, each as it is alone', async () => {
      const results = await Promise.all(cases.map((c) => gen.generateIds([c.prompt], c.options)));
      cases.forEach((c, i) => checkCase(c, results[i][0], 1e-4, caseName(c)));
      assert.equal(gen.scheduler.stats().blocksUsed, 0);
    });
  });
}
