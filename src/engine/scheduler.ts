// The scheduler: requests from anywhere (generate, stream, sessions) share one running batch. Each
// iteration admits waiting requests while sequence slots and KV blocks allow, runs at most one prefill
// chunk (so a long prompt never stalls running decodes for long), then one decode step over every running
// sequence, and hands the tokens to their requests. Finished and cancelled sequences leave at once. When
// the block pool runs out, the newest request is preempted: its cache is copied to host memory (within
// the swap space) and its blocks are freed; it continues later from that copy, bit for bit as it would
// have. Beam groups, and requests beyond the swap space, are recomputed from their tokens instead (random
// numbers depend only on seed and position, so a recomputation draws the same tokens wherever the
// recomputed keys and values are the same bits).
import { fail, PeregrineError } from '../errors.js';
import { LOGPROB_STRIDE, MAX_CANDIDATES } from '../ops/requests.js';
import type { CausalRuntime, PrefillChunk, StepFlags, StepOutput } from '../runtime/causal.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { BeamSearch, beamsToKeep } from './beam.js';
import { blockHash, BlockPool } from './blocks.js';
import { nextTopP, processes, requestRow } from './options.js';
import { Request, Sequence, type Carried, type GenerationResult, type TokenEvent, type TopLogprob } from './request.js';

export interface SchedulerStats {
  waiting: number;
  running: number;
  blocksUsed: number;
  blocksCached: number;
  blocksTotal: number;
  preemptions: number;
  /** preemptions that swapped the cache out to host memory (the others recompute), and the bytes held now */
  swapOuts: number;
  swapBytes: number;
  /** prompt tokens computed by prefill passes (tokens found in the prefix cache are not) */
  prefillTokens: number;
  /** tokens computed by decode steps */
  decodeTokens: number;
  /** iterations of the scheduling loop, prefill passes and decode steps run */
  iterations: number;
  prefillPasses: number;
  decodeSteps: number;
  /** milliseconds spent in prefill passes and in waiting for decode steps (device work and its launch) */
  prefillMs: number;
  decodeMs: number;
}

export const DEFAULT_SWAP_SPACE = 4 * 2 ** 30;

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);
function bitsToFloat(bits: number): number {
  i32[0] = bits;
  return f32[0];
}

/** A decode row: its request and sequence, and (for a step launched ahead) its row on the device. */
interface Row {
  r: Request;
  seq: Sequence;
  i?: number;
}

/** How many leading entries two lists share. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** The outputs of rows `idx` of a step, as rows 0.. */
function pick(out: StepOutput, idx: number[]): StepOutput {
  if (idx.every((x, i) => x === i) && idx.length === out.n) return out;
  const sub = <T extends Int32Array | Float32Array>(a: T | null, w: number): T | null => {
    if (!a) return null;
    const b = new (a.constructor as { new (n: number): T })(idx.length * w);
    idx.forEach((x, i) => b.set(a.subarray(x * w, (x + 1) * w), i * w));
    return b;
  };
  return {
    n: idx.length, ids: sub(out.ids, 1)!, status: sub(out.status, 1)!, logprobs: sub(out.logprobs, LOGPROB_STRIDE),
    candValues: sub(out.candValues, MAX_CANDIDATES), candIds: sub(out.candIds, MAX_CANDIDATES),
  };
}

export class Scheduler {
  readonly pool: BlockPool;
  /** the encoder-memory pool of an encoder-decoder model */
  readonly memoryPool: BlockPool | null;
  /** requests admitted this iteration whose sources the encoder has not run over yet */
  private readonly toEncode: Request[] = [];
  private readonly waiting: Request[] = [];
  private readonly running: Request[] = [];
  private readonly freeSlots: number[] = [];
  private readonly beams = new Map<Request, BeamSearch>();
  /** the sequences of the decode rows the device holds, in order ([] forces an upload) */
  private deviceRows: Sequence[] = [];
  private looping = false;
  /** idle sessions' caches (their blocks), oldest first: reclaimed before any running request is preempted */
  private readonly held = new Set<Carried>();
  /** a decode step launched ahead, whose tokens are not read yet */
  private inflight: { rows: Row[]; flags: StepFlags } | null = null;
  /** the rows of a prefill pass, reused */
  private readonly chunk: PrefillChunk;
  preemptions = 0;
  private swapOuts = 0;
  private swapBytes = 0;
  private prefillTokens = 0;
  private decodeTokens = 0;
  private readonly timing = { iterations: 0, prefillPasses: 0, decodeSteps: 0, prefillMs: 0, decodeMs: 0 };

  /** `swapSpace`: host bytes for the caches of preempted requests */
  constructor(readonly runtime: CausalRuntime, readonly tokenizer: Tokenizer | null, readonly swapSpace = DEFAULT_SWAP_SPACE) {
    const { kvBlocks, blockSize, maxBatch } = runtime.limits;
    this.pool = new BlockPool(kvBlocks, blockSize);
    const memory = runtime.encoderMemory;
    this.memoryPool = memory ? new BlockPool(memory.limits.blocks, blockSize) : null;
    for (let s = maxBatch - 1; s >= 0; s--) this.freeSlots.push(s);
    const n = runtime.limits.prefillChunk;
    this.chunk = {
      n: 0, heads: 0, ids: new Int32Array(n), positions: new Int32Array(n), slots: new Int32Array(n),
      headRows: new Int32Array(n), headSlots: new Int32Array(n), headLengths: new Int32Array(n),
      scores: 0, scoreRows: new Int32Array(n), scoreSlots: new Int32Array(n), scoreTargets: new Int32Array(n),
    };
  }

  stats(): SchedulerStats {
    return {
      waiting: this.waiting.length, running: this.running.length, blocksUsed: this.pool.used(), blocksCached: this.pool.cached(),
      blocksTotal: this.pool.blocks - 1, preemptions: this.preemptions,
      swapOuts: this.swapOuts, swapBytes: this.swapBytes, prefillTokens: this.prefillTokens, decodeTokens: this.decodeTokens, ...this.timing,
    };
  }

  /** Checks that a request can ever run here (alone, it must fit the pools and the sequence length); `source`: its source tokens (encoder-decoder). */
  check(tokens: number, spec: Request['spec'], source = 0): void {
    const { maxSeqLen, blockSize } = this.runtime.limits;
    const total = tokens + spec.maxNewTokens;
    if (total > maxSeqLen) {
      fail('bad-request', `the prompt has ${tokens} tokens; with ${spec.maxNewTokens} new tokens that is ${total} positions, beyond the ${maxSeqLen} this generator holds per sequence; shorten the prompt, ask for fewer new tokens, or load with a larger max sequence length`);
    }
    const beams = spec.beam?.beams ?? 1;
    const memory = this.runtime.encoderMemory;
    if (memory && source) {
      const most = memory.limits.maxSourceLen, need = Math.ceil(source / blockSize);
      if (source > most) fail('bad-request', `the source has ${source} tokens, beyond the ${most} this generator's encoder takes; shorten it, truncate it (--truncate), or load with a larger max source length`);
      if (need > memory.limits.blocks - 1) fail('bad-request', `the source needs ${need} encoder-memory blocks of ${blockSize} tokens, but the pool has ${memory.limits.blocks - 1}`);
    }
    if (beams > this.runtime.limits.maxBatch) fail('bad-request', `num beams (${beams}) is above the ${this.runtime.limits.maxBatch} sequences this generator runs at once (--max-batch)`);
    // one sequence holds at most the blocks of its positions (a cached block it adopts is full and never written);
    // beams each copy the prompt's last block when they fork, and grow apart
    const blocks = spec.beam ? Math.ceil(tokens / blockSize) + beams * (Math.ceil(spec.maxNewTokens / blockSize) + 1) : Math.ceil(total / blockSize);
    if (blocks > this.pool.blocks - 1) {
      fail('bad-request', `the request needs up to ${blocks} KV-cache blocks of ${blockSize} tokens, but the pool has ${this.pool.blocks - 1}; load with more KV blocks (--kv-blocks) or ask for fewer tokens`);
    }
  }

  submit(r: Request): void {
    this.waiting.push(r);
    this.kick();
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (this.iterate()) await new Promise<void>((resolve) => setImmediate(resolve));
    } catch (err) {
      this.failAll(err as Error);
    } finally {
      this.looping = false;
    }
    if (this.waiting.length || this.running.length) this.kick();
  }

  /** One iteration; false when there is nothing left to do. */
  private iterate(): boolean {
    this.timing.iterations++;
    this.reap();
    this.admit();
    this.prefill();
    this.decode();
    if (this.running.length === 0 && this.inflight) {
      // a step launched ahead for rows that have all finished: let it end, and let go of their requests
      this.runtime.decodeRead(this.inflight.flags);
      this.inflight = null;
    }
    return this.waiting.length > 0 || this.running.length > 0;
  }

  private failAll(err: Error): void {
    for (const r of [...this.running, ...this.waiting]) {
      this.release(r, 'failed');
      r.sink.error(err);
    }
    this.running.length = 0;
    this.waiting.length = 0;
    this.deviceRows = [];
    this.inflight = null;
  }

  // ---- admission, release, preemption ----

  private reap(): void {
    for (const list of [this.waiting, this.running]) {
      for (let i = list.length - 1; i >= 0; i--) {
        const r = list[i];
        if (!r.cancelled) continue;
        list.splice(i, 1);
        this.release(r, 'failed');
        r.sink.error(r.cancelled);
      }
    }
  }

  private admit(): void {
    while (this.waiting.length) {
      const r = this.waiting[0];
      const need = r.spec.beam?.beams ?? 1;
      if (this.freeSlots.length < need || !this.start(r)) break;
      this.waiting.shift();
      this.running.push(r);
    }
    this.encodeAdmitted();
  }

  /** Gives a request its encoder memory: blocks, every slot of the request pointed at them; false when the pool is short. */
  private attachMemory(r: Request): boolean {
    const pool = this.memoryPool!, source = r.source!;
    const need = Math.ceil(source.length / pool.blockSize);
    if (need > pool.available()) return false;
    for (let i = 0; i < need; i++) r.memoryBlocks.push(pool.allocate()!);
    for (const slot of [r.seqs[0].slot, ...r.reserved]) this.runtime.encoderMemory!.attach(slot, r.memoryBlocks, source.length);
    this.toEncode.push(r);
    return true;
  }

  /** Runs the encoder over the sources of the requests admitted this iteration (few passes for many). */
  private encodeAdmitted(): void {
    if (this.toEncode.length === 0) return;
    const sources = this.toEncode.map((r) => ({ slot: r.seqs[0].slot, ids: r.source! }));
    this.toEncode.length = 0;
    this.runtime.encoderMemory!.encode(sources);
  }

  /** Frees an idle session's cache (closed, dropped, or reclaimed): its next turn computes everything again. */
  drop(c: Carried): void {
    this.held.delete(c);
    for (const b of c.blocks) this.pool.release(b);
    c.blocks = [];
    c.computed = 0;
  }

  /** Reclaims idle sessions' caches, oldest first, until `blocks` blocks are available; false if it cannot. */
  private reclaim(blocks: number): boolean {
    for (const c of this.held) {
      if (this.pool.available() >= blocks) break;
      this.drop(c);
    }
    return this.pool.available() >= blocks;
  }

  /** Gives a request its first sequence: cached or carried blocks, fresh blocks for the rest of its tokens, slots. */
  private start(r: Request): boolean {
    const tokens = r.allTokens();
    const seq = new Sequence(tokens, r.spec.topP);
    for (const id of r.generated) seq.topP = nextTopP(r.spec, seq.topP, id);
    const bs = this.pool.blockSize;
    const carried = r.carried;
    if (carried) this.held.delete(carried);
    if (carried && carried.blocks.length) {
      // a session turn: its earlier blocks move to the sequence (and back to the session at the end)
      seq.blocks = carried.blocks;
      seq.computed = carried.computed;
      carried.blocks = [];
      carried.computed = 0;
    }
    const swapped = r.swapped;
    // a request that scores its prompt computes all of it (cached blocks would skip positions it scores)
    if (!swapped) this.nameBlocks(seq, !r.scoringPrompt);
    const needed = Math.ceil(tokens.length / bs) - seq.blocks.length;
    if (needed > this.pool.available() && !this.reclaim(needed)) {
      for (const b of seq.blocks) this.pool.release(b);
      return false;
    }
    for (let i = 0; i < needed; i++) seq.blocks.push(this.pool.allocate()!);
    if (swapped) {
      this.runtime.restoreBlocks(seq.blocks.slice(0, swapped.blocks), swapped.data);
      seq.computed = swapped.computed;
      this.unswap(r);
      this.nameBlocks(seq, false);
    }
    seq.slot = this.freeSlots.pop()!;
    r.seqs.push(seq);
    if (r.spec.beam) {
      for (let i = 1; i < r.spec.beam.beams; i++) r.reserved.push(this.freeSlots.pop()!);
      this.beams.set(r, new BeamSearch(r.spec));
    }
    if (r.source && !this.attachMemory(r)) {
      this.release(r, 'preempted');
      return false;
    }
    this.upload(r, seq, true);
    return true;
  }

  /** Uploads a sequence's request row and history (with `all`), and the block-table entries the device lacks. */
  private upload(r: Request, seq: Sequence, all: boolean): void {
    const rt = this.runtime;
    if (all) {
      rt.setRequest(seq.slot, requestRow(r.spec, r.promptLen, 0), seq.topP);
      if (processes(r.spec)) rt.setHistory(seq.slot, seq.tokens);
      seq.uploaded = 0;
    }
    rt.setBlocks(seq.slot, seq.blocks, seq.uploaded);
    seq.uploaded = seq.blocks.length;
  }

  /**
   * Names the sequence's full, computed blocks for the prefix cache; with `adopt`, first replaces its
   * leading blocks by cached ones where the cache holds them (never the block of its last token, whose
   * logits are needed).
   */
  private nameBlocks(seq: Sequence, adopt: boolean): void {
    if (!this.runtime.model.prefixCacheable) return;
    const bs = this.pool.blockSize;
    for (let i = seq.hashes.length; (i + 1) * bs <= seq.tokens.length; i++) {
      const hash = blockHash(i ? seq.hashes[i - 1] : '', seq.tokens, i * bs, bs);
      if (i < seq.blocks.length && (i + 1) * bs <= seq.computed) {
        this.pool.name(seq.blocks[i], hash);
      } else if (adopt && i === seq.blocks.length && (i + 1) * bs < seq.tokens.length) {
        const b = this.pool.lookup(hash);
        if (b === null) return;
        seq.blocks.push(b);
        seq.computed = (i + 1) * bs;
      } else {
        return;
      }
      seq.hashes.push(hash);
    }
  }

  /**
   * Frees a request's slots and blocks. A session turn's sequence goes back to its session when the turn
   * `finished`; when it failed, the session hears of it too (it keeps what it had before the turn); when it
   * is only preempted, the turn will run again and the session hears nothing.
   */
  private release(r: Request, how: 'finished' | 'failed' | 'preempted'): void {
    for (const seq of r.seqs) {
      if (seq.slot >= 0) this.freeSlots.push(seq.slot);
      seq.slot = -1;
    }
    for (const s of r.reserved) this.freeSlots.push(s);
    r.reserved.length = 0;
    for (const b of r.memoryBlocks) this.memoryPool!.release(b);
    r.memoryBlocks.length = 0;
    const keep = how === 'finished' && r.onRelease && r.seqs.length === 1 ? r.seqs[0] : null;
    for (const seq of r.seqs) if (seq !== keep) for (const b of seq.blocks) this.pool.release(b);
    if (keep && r.carried) this.held.add(r.carried);
    if (how !== 'preempted') r.onRelease?.(keep ? { tokens: keep.tokens, blocks: keep.blocks, computed: keep.computed } : null);
    r.seqs.length = 0;
    this.beams.delete(r);
    if (how === 'failed') this.unswap(r);
  }

  private unswap(r: Request): void {
    if (!r.swapped) return;
    this.swapBytes -= r.swapped.data.byteLength;
    r.swapped = null;
  }

  /**
   * Frees the newest running request so that older ones can grow; it waits at the head of the queue, its
   * cache swapped out when it is one sequence and the swap space holds it.
   */
  private preempt(): Request {
    const victim = this.running.pop()!;
    const seq = victim.seqs.length === 1 && !victim.spec.beam ? victim.seqs[0] : null;
    const blocks = seq ? Math.ceil(seq.computed / this.pool.blockSize) : 0;
    if (seq && blocks > 0 && this.swapBytes + blocks * this.runtime.blockBytes <= this.swapSpace) {
      const data = this.runtime.saveBlocks(seq.blocks.slice(0, blocks));
      victim.swapped = { data, blocks, computed: seq.computed };
      this.swapBytes += data.byteLength;
      this.swapOuts++;
    }
    this.release(victim, 'preempted');
    if (victim.spec.beam) victim.generated.length = 0;
    this.waiting.unshift(victim);
    this.preemptions++;
    this.deviceRows = [];
    return victim;
  }

  /**
   * Makes position `pos` of the sequence writable: a fresh block past its end, or a private copy of a
   * shared block (copy-on-write). When the pool is empty it reclaims idle sessions' caches, then (with
   * `preempt`) preempts newer requests; false if it found no block, or `owner` itself was preempted.
   */
  private writable(owner: Request, seq: Sequence, pos: number, copies: number[], preempt = true): boolean {
    const i = Math.floor(pos / this.pool.blockSize);
    const shared = i < seq.blocks.length && this.pool.refCount(seq.blocks[i]) > 1;
    if (i < seq.blocks.length && !shared) return true;
    let b = this.pool.allocate();
    if (b === null && this.reclaim(1)) b = this.pool.allocate();
    while (b === null) {
      if (!preempt || this.preempt() === owner) return false;
      b = this.pool.allocate();
    }
    if (shared) {
      copies.push(seq.blocks[i], b);
      this.pool.release(seq.blocks[i]);
      seq.blocks[i] = b;
      seq.uploaded = Math.min(seq.uploaded, i);
    } else {
      seq.blocks.push(b);
    }
    return true;
  }

  // ---- passes ----

  private flags(rows: Request[]): StepFlags {
    let process = false, logprobs = false, candidates = false;
    for (const r of rows) {
      process ||= processes(r.spec) || r.spec.beam !== null;
      logprobs ||= r.spec.logprobs >= 0;
      candidates ||= r.spec.beam !== null;
    }
    return { process, logprobs, candidates };
  }

  private prefill(): void {
    const chunk = this.runtime.limits.prefillChunk;
    const c = this.chunk;
    c.n = c.heads = c.scores = 0;
    const parts: { r: Request; seq: Sequence; m: number; head: boolean }[] = [];
    /** the request of each scored row */
    const scored: Request[] = [];
    for (const r of this.running) {
      for (const seq of r.seqs) {
        // a sequence whose last token alone is not in the cache takes a decode row instead
        if (c.n === chunk || seq.computed >= seq.length - 1) continue;
        const m = Math.min(seq.length - seq.computed, chunk - c.n);
        const scoring = r.scoringPrompt && seq === r.seqs[0];
        for (let i = 0; i < m; i++) {
          const position = seq.computed + i;
          if (scoring && position + 1 < r.promptLen) {
            c.scoreRows[c.scores] = c.n;
            c.scoreSlots[c.scores] = seq.slot;
            c.scoreTargets[c.scores++] = seq.tokens[position + 1];
            scored.push(r);
          }
          c.ids[c.n] = seq.tokens[position];
          c.positions[c.n] = position;
          c.slots[c.n++] = seq.slot;
        }
        const head = seq.computed + m === seq.length;
        if (head) {
          c.headRows[c.heads] = c.n - 1;
          c.headSlots[c.heads] = seq.slot;
          c.headLengths[c.heads++] = seq.length;
        }
        parts.push({ r, seq, m, head });
      }
    }
    if (c.n === 0) return;
    for (const { r, seq } of parts) this.upload(r, seq, false);
    const t0 = performance.now();
    const out = this.runtime.prefill(c, this.flags(parts.filter((p) => p.head).map((p) => p.r)));
    this.timing.prefillMs += performance.now() - t0;
    this.timing.prefillPasses++;
    this.prefillTokens += c.n;
    const lp = out.promptLogprobs;
    // row i predicts the prompt token after its own position
    if (lp) scored.forEach((r, i) => r.scored(c.positions[c.scoreRows[i]] + 1, bitsToFloat(lp[i * LOGPROB_STRIDE]), r.spec.logprobs > 0 ? this.alternatives(r, lp, i * LOGPROB_STRIDE) : null));
    let h = 0;
    for (const { r, seq, m, head } of parts) {
      seq.computed += m;
      this.nameBlocks(seq, false);
      if (head) this.drawn(r, [seq], out, [h++]);
    }
  }

  /** The request's top-logprobs alternatives from the logprobs row at o. */
  private alternatives(r: Request, lp: Int32Array, o: number): TopLogprob[] {
    const top: TopLogprob[] = [];
    for (let i = 0; i < r.spec.logprobs; i++) {
      const tid = lp[o + 1 + 2 * i];
      top.push({ id: tid, logprob: bitsToFloat(lp[o + 2 + 2 * i]), ...(r.tokenizer ? { text: r.tokenizer.decode([tid], false) } : {}) });
    }
    return top;
  }

  /**
   * One decode step. A step launched ahead by the last iteration is finished here; otherwise the rows are
   * gathered (each sequence whose last token alone is not cached, if it can get a block), uploaded when
   * they changed, and run. Then, when nothing about the rows needs the host, the next step is launched
   * before this one's tokens are handed out, so that host work overlaps the GPU's.
   */
  private decode(): void {
    const rt = this.runtime;
    let rows: Row[], out: StepOutput;
    const t0 = performance.now();
    if (this.inflight) {
      rows = this.inflight.rows;
      out = rt.decodeRead(this.inflight.flags);
      this.inflight = null;
    } else {
      const copies: number[] = [];
      // growing may preempt newer requests (the last of `running`), so walk a copy and skip the preempted
      for (const r of [...this.running]) {
        if (!this.running.includes(r)) continue;
        for (const seq of r.seqs) {
          if (seq.computed !== seq.length - 1) continue;
          if (!this.writable(r, seq, seq.computed, copies)) break;
        }
      }
      rows = [];
      for (const r of this.running) for (const seq of r.seqs) if (seq.computed === seq.length - 1) rows.push({ r, seq, i: rows.length });
      if (rows.length === 0) return;
      rt.copyBlocks(copies);
      for (const { r, seq } of rows) this.upload(r, seq, false);
      const seqs = rows.map((x) => x.seq);
      const beamRows = rows.some((x) => x.r.spec.beam);
      if (beamRows || seqs.length !== this.deviceRows.length || seqs.some((s, i) => s !== this.deviceRows[i])) {
        rt.setDecodeRows({
          n: rows.length, slots: Int32Array.from(seqs, (s) => s.slot), ids: Int32Array.from(seqs, (s) => s.tokens[s.length - 1]),
          positions: Int32Array.from(seqs, (s) => s.length - 1),
        });
      }
      const flags = this.flags(rows.map((x) => x.r));
      rt.decodeLaunch(flags);
      out = rt.decodeRead(flags);
      this.deviceRows = seqs;
    }
    this.timing.decodeMs += performance.now() - t0;
    this.timing.decodeSteps++;
    // rows whose request left meanwhile (cancelled, or finished by the step before) are dropped
    rows = rows.filter((x) => x.seq.slot >= 0);
    out = pick(out, rows.map((x) => x.i!));
    this.decodeTokens += rows.length;
    for (const x of rows) x.seq.computed++;
    this.launchAhead(rows);
    // hand out tokens; a beam group's rows go together
    const groups = new Map<Request, number[]>();
    rows.forEach((x, i) => {
      const list = groups.get(x.r);
      if (list) list.push(i);
      else groups.set(x.r, [i]);
    });
    for (const [r, idx] of groups) this.drawn(r, idx.map((i) => rows[i].seq), out, idx);
  }

  /**
   * Launches the next step of these rows now, when the device can run it from its own state: sampled rows
   * only (beam rows wait for the host's choice), no log-probs (their buffer would be overwritten), the same
   * rows as the device holds, and a block ready for every row's next position without preempting anyone.
   * A row whose sequence finishes with the step just read computes one token too many; it is dropped.
   */
  private launchAhead(rows: Row[]): void {
    if (rows.length === 0 || rows.length !== this.deviceRows.length) return;
    for (let i = 0; i < rows.length; i++) {
      const { r, seq } = rows[i];
      if (seq !== this.deviceRows[i] || r.spec.beam || r.spec.logprobs >= 0 || r.cancelled) return;
    }
    // the next step writes each row's position `computed`
    const copies: number[] = [];
    for (const { r, seq } of rows) if (!this.writable(r, seq, seq.computed, copies, false)) return;
    this.runtime.copyBlocks(copies);
    for (const { r, seq } of rows) this.upload(r, seq, false);
    const flags = this.flags(rows.map((x) => x.r));
    this.runtime.decodeLaunch(flags);
    this.inflight = { rows: rows.map((x, i) => ({ ...x, i })), flags };
  }

  /** Tokens for a request's sequences from rows `idx` of a pass; a row whose logits were not finite ends the request. */
  private drawn(r: Request, seqs: Sequence[], out: StepOutput, idx: number[]): void {
    if (idx.some((row) => out.status[row] !== 0)) return this.broken(r, seqs[0].length);
    // a request that only scores its prompt ends with its prompt's last row, before drawing anything
    if (r.spec.maxNewTokens === 0) return this.finish(r, 'length');
    if (r.spec.beam) return this.beamStep(r, out, idx);
    const seq = seqs[0], row = idx[0];
    const id = out.ids[row];
    seq.tokens.push(id);
    seq.topP = nextTopP(r.spec, seq.topP, id);
    r.generated.push(id);
    this.nameBlocks(seq, false);
    let logprob: number | undefined, top: TopLogprob[] | undefined;
    // another request of the pass may have asked for log-probs where this one did not
    if (out.logprobs && r.spec.logprobs >= 0) {
      const o = row * LOGPROB_STRIDE;
      logprob = bitsToFloat(out.logprobs[o]);
      r.logprobs.push(logprob);
      if (r.spec.logprobs > 0) {
        top = this.alternatives(r, out.logprobs, o);
        r.topLogprobs.push(top);
      }
    }
    const n = r.generated.length, spec = r.spec;
    let finish: 'eos' | 'length' | 'stop' | undefined = spec.eos.includes(id) ? 'eos' : n >= spec.maxNewTokens ? 'length' : undefined;
    let text = '';
    if (r.text) {
      const checkStops = n >= spec.minNewTokens;
      text = r.text.push(id, checkStops);
      if (r.text.stopped) finish = 'stop';
      else if (finish) text += r.text.finish(checkStops);
      if (r.text.stopped) finish = 'stop';
    }
    const ok = this.emit(r, { index: r.index, id, text, ...(logprob !== undefined ? { logprob } : {}), ...(top ? { topLogprobs: top } : {}), ...(finish ? { finishReason: finish } : {}) });
    if (finish && ok) this.finish(r, finish);
  }

  /**
   * Hands an event to the request's consumer; a consumer that throws cancels its own request only (the next
   * iteration reaps it and reports the error). False when it threw.
   */
  private emit(r: Request, e: TokenEvent): boolean {
    try {
      r.sink.token(e);
      return true;
    } catch (err) {
      r.cancel(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
  }

  /**
   * Fails a request whose logits held a NaN or +Infinity after `tokens` tokens: whatever it drew would be
   * noise. Only this request stops; the rest of the batch computes its own rows and goes on.
   */
  private broken(r: Request, tokens: number): void {
    const i = this.running.indexOf(r);
    if (i >= 0) this.running.splice(i, 1);
    this.release(r, 'failed');
    const f16 = this.runtime.backend.activationDtype === 'f16';
    r.sink.error(new PeregrineError('non-finite', `the model computed non-finite logits (NaN or infinity) for prompt ${r.index} at ${tokens} tokens, so its generation stopped: `
      + (f16 ? 'the weights hold NaN or infinity, or the computation overflowed in f16; try --dtype bf16 or f32' : 'the weights hold NaN or infinity, or the computation overflowed; check the checkpoint')));
  }

  private finish(r: Request, reason: 'eos' | 'length' | 'stop'): void {
    const i = this.running.indexOf(r);
    if (i >= 0) this.running.splice(i, 1);
    this.release(r, 'finished');
    const result = {
      ids: [...r.generated], text: r.text?.text ?? '', finishReason: reason,
      ...(r.spec.logprobs >= 0 ? { logprobs: [...r.logprobs], cumLogprob: r.logprobs.reduce((a, b) => a + b, 0) } : {}),
      ...(r.spec.logprobs > 0 ? { topLogprobs: [...r.topLogprobs] } : {}),
      ...this.promptResult(r),
    };
    r.sink.done(result);
  }

  /** A result's prompt log-probs (with promptLogprobs): one per prompt token, null for the first. */
  private promptResult(r: Request): Pick<GenerationResult, 'promptLogprobs' | 'promptTopLogprobs'> {
    if (!r.spec.promptLogprobs) return {};
    if (r.scoringPrompt) throw new Error(`internal: a prompt log-prob of request ${r.index} was never computed`);
    return { promptLogprobs: [...r.promptLogprobs], ...(r.spec.logprobs > 0 ? { promptTopLogprobs: [...r.promptTop] } : {}) };
  }

  // ---- beam search ----

  private beamStep(r: Request, out: StepOutput, idx: number[]): void {
    const search = this.beams.get(r)!;
    const spec = r.spec, beams = spec.beam!.beams;
    // a row has at most a vocabulary's worth of candidates
    const k = Math.min(beamsToKeep(beams, spec.eos.length), this.runtime.model.info.vocabSize);
    const cands = idx.map((row) => ({
      values: out.candValues!.subarray(row * MAX_CANDIDATES, row * MAX_CANDIDATES + k),
      ids: out.candIds!.subarray(row * MAX_CANDIDATES, row * MAX_CANDIDATES + k),
    }));
    const next = search.step(cands);
    if (next.done) return this.finishBeams(r, search);
    // beam i continues beam parents[i]: it takes the parent's blocks (shared; a block is copied only when
    // a beam writes into a shared one), never a copy of the cache
    const old = r.seqs.map((s) => ({ tokens: s.tokens, blocks: s.blocks, computed: s.computed, hashes: s.hashes, uploaded: s.uploaded }));
    // at the first step only beam 0 exists; the others are copies of it
    const parent = (i: number) => old[Math.min(next.parents[i], old.length - 1)];
    while (r.seqs.length < beams) {
      const s = new Sequence([], 1);
      s.slot = r.reserved.pop()!;
      this.runtime.setRequest(s.slot, requestRow(spec, r.promptLen, 0), 1);
      r.seqs.push(s);
    }
    for (let i = 0; i < beams; i++) for (const b of parent(i).blocks) this.pool.retain(b);
    for (const o of old) for (const b of o.blocks) this.pool.release(b);
    // the device already has each slot's old tokens and block-table entries: only what differs goes up
    r.seqs.forEach((s, i) => {
      const p = parent(i), had = old[i];
      s.tokens = [...p.tokens, next.tokens[i]];
      s.blocks = [...p.blocks];
      s.computed = p.computed;
      s.hashes = [...p.hashes];
      s.uploaded = had ? Math.min(had.uploaded, commonPrefix(had.blocks, s.blocks)) : 0;
      if (processes(spec)) this.runtime.setHistory(s.slot, s.tokens, had ? commonPrefix(had.tokens, s.tokens) : 0);
    });
  }

  private finishBeams(r: Request, search: BeamSearch): void {
    const best = search.best();
    const dec = (ids: number[]) => (r.tokenizer ? r.tokenizer.decode(ids) : '');
    r.generated.push(...best[0].ids);
    for (let i = 0; i < best[0].ids.length; i++) {
      const id = best[0].ids[i];
      const last = i === best[0].ids.length - 1;
      const text = r.text ? r.text.push(id, false) + (last ? r.text.finish(false) : '') : '';
      if (!this.emit(r, { index: r.index, id, text, ...(last ? { finishReason: best[0].finishReason } : {}) })) return;
    }
    const i = this.running.indexOf(r);
    if (i >= 0) this.running.splice(i, 1);
    this.release(r, 'finished');
    r.sink.done({
      ids: best[0].ids, text: r.text?.text ?? '', finishReason: best[0].finishReason,
      sequences: best.map((b) => ({ ids: b.ids, text: dec(b.ids), score: b.score })),
      ...this.promptResult(r),
    });
  }
}
