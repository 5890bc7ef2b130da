// The logits-to-tokens kernels (kernels/sampling.cu) at a decode step: each reads the f32 logits of its rows at least
// once, so the share of the bandwidth says how close a pass over the vocabulary comes to one read. GPT-2's and
// Qwen2's vocabularies at 1 and 32 rows, with 500-token histories (the inputs are test/gpu/sampling-io.ts's).
import { seededRandom } from '../../src/ops/rng.js';
import { MODE } from '../../src/ops/requests.js';
import { histories, historyRow, Io, logitRows, type Request, type Style } from '../../test/gpu/sampling-io.js';
import type { KernelCase, Tensors } from './harness.js';

const OPS: [string, Request, (io: Io) => void][] = [
  ['selectCandidates greedy', { mode: MODE.SAMPLE, temperature: 0 }, (io) => io.ops.selectCandidates(io.cand, io.scores, io.rows, io.seqs, io.n, io.status)],
  ['selectCandidates top-k 50', { mode: MODE.SAMPLE, topK: 50 }, (io) => io.ops.selectCandidates(io.cand, io.scores, io.rows, io.seqs, io.n, io.status)],
  ['sample, full vocabulary, top-p 0.9', { mode: MODE.SAMPLE, topP: 0.9 }, (io) => io.ops.sample(io.ids, io.scores, io.cand, io.rows, io.seqs, io.n)],
  ['processLogits, every penalty', { mode: MODE.SAMPLE, repetition: 1.1, frequency: 0.1, presence: 0.1, promptLen: 200 },
    (io) => io.ops.processLogits(io.scores, io.logits, io.rows, io.seqs, io.n)],
  ['logprobs, top 5', { mode: MODE.SAMPLE, logprobs: 5 }, (io) => io.ops.logprobs(io.out, io.logits, io.ids, io.rows, io.seqs, io.n, io.scratch)],
];

export function* sampling(t: Tensors): Generator<KernelCase> {
  for (const [V, n] of [[50257, 1], [152064, 1], [50257, 32], [152064, 32]]) {
    const rand = seededRandom(600 + V + n);
    const slots = Array.from({ length: n }, (_, i) => i);
    const logits = logitRows(slots.map((): Style => 'random'), V, rand);
    const history = histories(slots.map(() => historyRow(500, 1024, V, rand, 300)), 1024);
    for (const [op, req, body] of OPS) {
      const io = new Io(t.b, { V, logits, slots, lengths: slots.map(() => 500), reqs: slots.map(() => req), maxSeq: 1024, history });
      for (const x of io.tensors()) t.keep(x);
      yield { op, shape: `${n} x ${V}`, bytes: n * V * 4, copies: 1, run: () => body(io) };
    }
  }
}
