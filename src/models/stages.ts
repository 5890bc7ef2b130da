// Pipeline parallelism's split of a model's layers: stage s of S holds layers floor(s L / S) .. floor((s + 1) L / S) - 1,
// the first stage also the embedding, the last the final norm and the LM head.
import { fail } from '../errors.js';
import type { PipelineStage, Tensor } from '../ops/backend.js';
import type { Pass } from './model.js';

export interface StageLayers {
  /** the stage's first layer and the one after its last */
  first: number;
  end: number;
  /** whether the stage embeds the tokens (the first) and computes the logits (the last) */
  embeds: boolean;
  heads: boolean;
}

/** The layers of `layers` that pipeline stage `p` holds (all of them without a pipeline). */
export function stageLayers(layers: number, p: PipelineStage | null): StageLayers {
  if (!p) return { first: 0, end: layers, embeds: true, heads: true };
  if (p.stages > layers) fail('unsupported-config', `a pipeline of ${p.stages} stages needs a layer a stage at least, and the model has ${layers}; use at most ${layers} stages`);
  return {
    first: Math.floor((p.stage * layers) / p.stages), end: Math.floor(((p.stage + 1) * layers) / p.stages),
    embeds: p.stage === 0, heads: p.stage === p.stages - 1,
  };
}

/** The residual stream a stage starts from: the rows the stage before it sends, or `embed`'s on the first stage. */
export function stageInput(p: Pass, x: Tensor, pp: PipelineStage | null, embed: () => void): void {
  if (pp && pp.stage > 0) p.ops.recvRows(x, p.n, pp.stage - 1);
  else embed();
}

/** The residual stream a stage ends with, to the stage after it (none after the last). */
export function stageOutput(p: Pass, x: Tensor, pp: PipelineStage | null): void {
  if (pp && pp.stage < pp.stages - 1) p.ops.sendRows(x, p.n, pp.stage + 1);
}

/**
 * Logits rows 0 .. n-1 of `out`: `compute` on the last stage (the only one with the head), which sends them to every
 * other stage, whose samplers then draw the same tokens.
 */
export function stageLogits(p: Pass, out: Tensor, n: number, pp: PipelineStage | null, compute: () => void): void {
  if (pp && pp.stage < pp.stages - 1) return p.ops.recvRows(out, n, pp.stages - 1);
  compute();
  if (pp) for (let s = 0; s < pp.stages - 1; s++) p.ops.sendRows(out, n, s);
}
