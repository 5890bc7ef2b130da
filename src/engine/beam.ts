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

/** Whether continuation (key, beam, id) ranks before (key2, beam2, id2): the higher key, then the lower beam and id. */
function ahead(key: number, beam: number, id: number, key2: number, beam2: number, id2: number): boolean {
  return key > key2 || (key === key2 && (beam < beam2 || (beam === beam2 && id < id2)));
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
  // the kept continuations of a step, best first
  private readonly kBeam: Int32Array;
  private readonly kId: Int32Array;
  private readonly kScore: Float32Array;
  private readonly kKey: Float32Array;

  constructor(private readonly spec: RequestSpec) {
    const b = spec.beam!;
    this.beams = b.beams;
    this.keep = beamsToKeep(b.beams, spec.eos.length);
    this.lengthPenalty = b.lengthPenalty;
    this.running = Array.from({ length: this.beams }, (_, i) => ({ tokens: [], score: i === 0 ? 0 : NEG }));
    this.kBeam = new Int32Array(this.keep);
    this.kId = new Int32Array(this.keep);
    this.kScore = new Float32Array(this.keep);
    this.kKey = new Float32Array(this.keep);
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
    // the best `keep` continuations by key, ties to the lower beam, then the lower id: an insertion into a short
    // sorted list per candidate (this runs for every beam request at every step, so it allocates nothing per candidate)
    const kBeam = this.kBeam, kId = this.kId, kScore = this.kScore, kKey = this.kKey;
    let n = 0;
    for (let i = 0; i < this.running.length; i++) {
      const base = this.running[i].score, c = cands[Math.min(i, cands.length - 1)];
      for (let r = 0; r < c.ids.length; r++) {
        const score = f32(c.values[r] + base), key = rate === 0 ? score : f32(score + rate * r), id = c.ids[r];
        if (n === keep && !ahead(key, i, id, kKey[n - 1], kBeam[n - 1], kId[n - 1])) continue;
        let p = n < keep ? n++ : keep - 1;
        for (; p > 0 && ahead(key, i, id, kKey[p - 1], kBeam[p - 1], kId[p - 1]); p--) {
          kKey[p] = kKey[p - 1]; kBeam[p] = kBeam[p - 1]; kId[p] = kId[p - 1]; kScore[p] = kScore[p - 1];
        }
        kKey[p] = key; kBeam[p] = i; kId[p] = id; kScore[p] = score;
      }
    }
    const kept = Array.from({ length: n }, (_, r) => ({ beam: kBeam[r], id: kId[r], score: kScore[r], key: kKey[r] }));
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
