// Logits at every position of one prompt: a prefill of the whole prompt that keeps every row.
import type { CausalLM } from '../../src/models/model.js';

export function allLogits(model: CausalLM, ids: number[]): Float32Array {
  const n = ids.length;
  model.reserve(n, n);
  const rows = Int32Array.from({ length: n }, (_, i) => i);
  model.prefill({ n, ids: Int32Array.from(ids), positions: rows, slots: new Int32Array(n), outRows: rows, outSlots: rows, outCount: n });
  model.prefillLogits(n);
  return model.backend.readFloat(model.io.logits, n * model.info.vocabSize).slice();
}
