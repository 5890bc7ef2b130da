// Launchers for kernels/sampling.cu: the logits-to-tokens ops of the CUDA backend, whose definition is the
// CPU reference src/backends/cpu/sampling.ts. Every launch has a fixed shape for a given row count and
// vocabulary, and each row's behaviour comes from the device tables, so the ops are captured in graphs.
import type { Candidates, SampleRows, SequenceTables, Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import { ptr } from './tensor.js';

const TOPK_THREADS = 256;
/** Candidates the top-k filter keeps in shared memory before it falls back to radix selection (kernels: TOPK_CAP). */
export const TOPK_CAP = 256;
/** Stage-1 chunks of a row: the partial lists and their flags must fit Candidates.scratch (CANDIDATE_SCRATCH = 2 x 32 x 64 + 32). */
const MAX_CHUNKS = 32;
/** Fewer, larger chunks below this: a chunk's block should have several elements per thread. */
const MIN_CHUNK = 256;
const PROCESS_THREADS = 1024;
const SAMPLE_THREADS = 1024;

/** How selectCandidates and logprobs split a row of V scores over blocks: `chunks` chunks of `size` ids. */
export function chunking(V: number): { chunks: number; size: number } {
  const want = Math.min(MAX_CHUNKS, Math.max(1, Math.ceil(V / MIN_CHUNK)));
  const size = Math.ceil(V / want);
  return { chunks: Math.ceil(V / size), size };
}

export function processLogits(c: CudaContext, scores: Tensor, logits: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void {
  if (n === 0) return;
  c.kernels.get('sampling', 'process_logits').launch(c.stream, n, 1, 1, PROCESS_THREADS, 0,
    ptr(scores), ptr(logits), logits.shape[1], ptr(rows.slots), ptr(rows.lengths), ptr(seqs.requests), ptr(seqs.history), seqs.history.shape[1]);
}

/** Stage 1 of the two-stage top-k: (rows x chunks) blocks, each its chunk's exact top-k of x into scratch. */
function topkChunks(c: CudaContext, scratch: Tensor, x: Tensor, rows: SampleRows, seqs: SequenceTables, n: number, forLogprobs: boolean, cap: number) {
  const V = x.shape[1];
  const { chunks, size } = chunking(V);
  c.kernels.get('sampling', 'topk_chunks').launch(c.stream, n, chunks, 1, TOPK_THREADS, 0,
    ptr(scratch), ptr(x), V, size, ptr(rows.slots), ptr(seqs.requests), forLogprobs ? 1 : 0, cap);
  return { V, chunks, size };
}

/**
 * Two stages: (rows x chunks) blocks each find the exact top-k of their chunk into out.scratch (and whether
 * the chunk holds a NaN or +Infinity), then one block per row merges the partial lists and writes the row's
 * status. `cap` is for tests: 0 takes the radix-selection path everywhere.
 */
export function selectCandidates(c: CudaContext, out: Candidates, scores: Tensor, rows: SampleRows, seqs: SequenceTables, n: number,
  status: Tensor, cap = TOPK_CAP): void {
  if (n === 0) return;
  const { V, chunks, size } = topkChunks(c, out.scratch, scores, rows, seqs, n, false, cap);
  c.kernels.get('sampling', 'topk_merge').launch(c.stream, n, 1, 1, TOPK_THREADS, 0,
    ptr(out.values), ptr(out.ids), ptr(status), ptr(out.scratch), V, size, chunks, ptr(rows.slots), ptr(seqs.requests), cap);
}

export function sample(c: CudaContext, ids: Tensor, scores: Tensor, candidates: Candidates, rows: SampleRows, seqs: SequenceTables, n: number): void {
  if (n === 0) return;
  c.kernels.get('sampling', 'sample_rows').launch(c.stream, n, 1, 1, SAMPLE_THREADS, 0,
    ptr(ids), ptr(scores), scores.shape[1], ptr(candidates.values), ptr(candidates.ids), ptr(rows.slots), ptr(rows.lengths),
    ptr(seqs.requests), ptr(seqs.history), seqs.history.shape[1], ptr(seqs.topP));
}

/**
 * The first stage of selectCandidates over the raw logits (with each chunk's share of the log-sum-exp)
 * into scratch.scratch, then one block per row writes the row of `out`. `cap` as for selectCandidates.
 */
export function logprobs(c: CudaContext, out: Tensor, logits: Tensor, ids: Tensor, rows: SampleRows, seqs: SequenceTables, n: number,
  scratch: Candidates, cap = TOPK_CAP): void {
  if (n === 0) return;
  const { V, chunks, size } = topkChunks(c, scratch.scratch, logits, rows, seqs, n, true, cap);
  c.kernels.get('sampling', 'logprobs_merge').launch(c.stream, n, 1, 1, TOPK_THREADS, 0,
    ptr(out), ptr(scratch.scratch), ptr(logits), ptr(ids), V, size, chunks, ptr(rows.slots), ptr(seqs.requests), cap);
}

export function advance(c: CudaContext, positions: Tensor, keyLens: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void {
  if (n === 0) return;
  c.kernels.get('sampling', 'advance').launch(c.stream, Math.ceil(n / 256), 1, 1, 256, 0,
    ptr(positions), ptr(keyLens), ptr(rows.slots), ptr(seqs.requests), n);
}
