// Beam search with Hugging Face's semantics (transformers 5.x, GenerationMixin._beam_search), on the host
// over the candidates the device selected: each running beam's row gives its best `beamsToKeep`
// processed log-probs, which contain the global best of the flattened beams x vocabulary.
//   - scores accumulate in float32; beam 0 starts at 0 and the others at -1e9, so the first step expands beam 0;
//   - the best beamsToKeep = max(2, 1 + end tokens) x beams continuations are kept; those that end (an end
//     token, or the last allowed token) may finish only if ranked among the first `beams`, with score
//     sum / generated^lengthPenalty (generated counts the end token, not the prompt);
//   - the best `beams` continuations that do not end run on;
//   - early stopping true: done when `beams` hypotheses finished; false: also while the best running beam,
//     at its current length, could still beat the worst finished one; "never": at the longest possible length.
// FasterTransformer's diversity rate ranks the i-th best continuation of each beam by score + rate * i (it
// changes which continuations are chosen, never the scores).
import type { RequestSpec } from './options.js';

const NEG = -1e9;
const f32 = Math.fround;

interface Beam {
  tokens: number[];
  score: number;
}

export interface Hypothesis {
  ids: number[];
  score: number;
  finishReason: 'eos' | 'length';
}

export interface BeamChoice {
  done: boolean;
  /** the running beam each new beam continues */
  parents: number[];
  tokens: number[];
}

/** Continuations each beam's row must offer. */
export function beamsToKeep(beams: number, endTokens: number): number {
  return Math.max(2, 1 + endTokens) * beams;
}

export class BeamSearch {
  private running: Beam[];
  private finished: Hypothesis[] = [];
  private unsatisfied = true;
  private readonly beams: number;
  private readonly keep: number;
  private readonly lengthPenalty: number;

  constructor(private readonly spec: RequestSpec) {
    const b = spec.beam!;
    this.beams = b.beams;
    this.keep = beamsToKeep(b.beams, spec.eos.length);
    this.lengthPenalty = b.lengthPenalty;
    this.running = Array.from({ length: this.beams }, (_, i) => ({ tokens: [], score: i === 0 ? 0 : NEG }));
  }

  /** Generated tokens so far (the same for every running beam). */
  get generated(): number {
    return this.running[0].tokens.length;
  }

  private divide(score: number, length: number): number {
    return f32(score / f32(length ** this.lengthPenalty));
  }

  /**
   * One step from each running beam's candidates (best first; at the first step only beam 0 has a row,
   * and the others, identical to it, reuse its candidates).
   */
  step(cands: { values: Float32Array; ids: Int32Array }[]): BeamChoice {
    const { beams, keep, spec } = this;
    const rate = spec.beam!.diversityRate;
    const all: { beam: number; id: number; score: number; key: number }[] = [];
    this.running.forEach((b, i) => {
      const c = cands[Math.min(i, cands.length - 1)];
      for (let r = 0; r < c.ids.length; r++) {
        const score = f32(c.values[r] + b.score);
        all.push({ beam: i, id: c.ids[r], score, key: rate === 0 ? score : f32(score + rate * r) });
      }
    });
    all.sort((a, b) => b.key - a.key || a.beam - b.beam || a.id - b.id);
    const kept = all.slice(0, keep);
    const length = this.generated + 1;
    const last = length >= spec.maxNewTokens;
    const ends = kept.map((c) => last || spec.eos.includes(c.id));

    // finished hypotheses: the ending continuations among the first `beams`, while they can still matter
    const full = this.finished.length === beams && spec.beam!.earlyStopping === true;
    if (!full && this.unsatisfied) {
      kept.forEach((c, r) => {
        if (!ends[r] || r >= beams) return;
        this.finished.push({
          ids: [...this.running[c.beam].tokens, c.id], score: this.divide(c.score, length),
          finishReason: spec.eos.includes(c.id) ? 'eos' : 'length',
        });
      });
      this.finished.sort((a, b) => b.score - a.score);
      this.finished.length = Math.min(this.finished.length, beams);
    }

    // the beams that run on: the best continuations that do not end
    const next = kept.map((c, r) => ({ c, ends: ends[r], key: ends[r] ? f32(c.key + NEG) : c.key }))
      .sort((a, b) => b.key - a.key).slice(0, beams);
    const parents = next.map((x) => x.c.beam), tokens = next.map((x) => x.c.id);
    this.running = next.map((x) => ({ tokens: [...this.running[x.c.beam].tokens, x.c.id], score: x.ends ? f32(x.c.score + NEG) : x.c.score }));

    // can a running beam still beat the worst finished hypothesis?
    const never = spec.beam!.earlyStopping === 'never' && this.lengthPenalty > 0;
    const best = this.divide(this.running[0].score, never ? spec.maxNewTokens : length);
    const worst = this.finished.length < beams ? NEG : this.finished[this.finished.length - 1].score;
    this.unsatisfied &&= best > worst;
    const open = !(this.finished.length === beams && spec.beam!.earlyStopping === true);
    const done = last || ends.every(Boolean) || !this.unsatisfied || !open;
    return { done, parents, tokens };
  }

  /** The numReturnSequences best finished hypotheses, best first. */
  best(): Hypothesis[] {
    return this.finished.slice(0, this.spec.beam!.returns);
  }
}
