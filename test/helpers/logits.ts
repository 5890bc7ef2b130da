// Logits at every position of one prompt: for each prefix, the logits the generator's last pass computed
// for the token that follows it (the prefix cache keeps this from recomputing the shared start). Asking for
// log-probs keeps the scheduler from launching a decode step ahead, which would overwrite the logits.
import type { TextGenerator } from '../../src/engine/generation.js';

export async function allLogits(gen: TextGenerator, ids: number[]): Promise<Float32Array> {
  const V = gen.model.info.vocabSize;
  const out = new Float32Array(ids.length * V);
  for (let p = 0; p < ids.length; p++) {
    await gen.generateIds([ids.slice(0, p + 1)], { maxNewTokens: 1, stopAtEos: false, logprobs: true });
    out.set(gen.runtime.readLogits(1), p * V);
  }
  return out;
}
