// Pipeline parallelism's split of a model's layers: the first stage also holds the embedding (a lookup of a few rows a
// step), the last the final norm and the LM head (a whole matrix a step, as heavy as `head` layers), so the stages are
// split as if the head were `head` more layers: stage s of S starts at layer floor(s (L + head) / S), each stage keeping
// a layer at least.
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

/**
 * The layers of `layers` that pipeline stage `p` holds (all of them without a pipeline), the LM head weighing `head`
 * layers (its weights over one layer's).
 */
export function stageLayers(layers: number, p: PipelineStage | null, head = 0): StageLayers {
  if (!p) return { first: 0, end: layers, embeds: true, heads: true };
  const S = p.stages;
  if (S > layers) fail('unsupported-config', `a pipeline of ${S} stages needs a layer a stage at least, and the model has ${layers}; use at most ${layers} stages`);
  const start = (s: number) => (s === S ? layers : Math.min(layers - (S - s), Math.max(s, Math.floor((s * (layers + head)) / S))));
  return { first: start(p.stage), end: start(p.stage + 1), embeds: p.stage === 0, heads: p.stage === S - 1 };
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
