// The per-request logits-to-tokens kernels (kernels/sampling.cu) against the CPU reference
// (src/backends/cpu/sampling.ts), op by op, on awkward inputs: request rows mixing modes and options,
// padding rows that must stay untouched, rows whose slots are not 0..n-1 and repeat, ties, -Infinity,
// vocabularies of 6 to 152064 ids. Ids must match exactly, values to fp32 accuracy; seeded draws may differ
// only where fp32 and fp64 probability sums put a boundary on different sides.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { logprobs as logprobsOp, selectCandidates as selectOp } from '../../src/backends/cuda/sampling.js';
import { seededRandom } from '../../src/ops/rng.js';
import type { Tensor } from '../../src/ops/backend.js';
import { LOGPROB_STRIDE, MAX_CANDIDATES, MODE } from '../../src/ops/requests.js';
import { cpu, noGpu } from './helpers.js';
import { histories, historyRow, ID_SENTINEL, ints, Io, JUNK, logitRow, logitRows, OUT_SENTINEL, type Request, type Setup, type Style } from './sampling-io.js';

const skip = noGpu();
let gpuBackend: CudaBackend | null = null;
after(() => gpuBackend?.dispose());
function gpu(): CudaBackend {
  return (gpuBackend ??= new CudaBackend('f32'));
}

const VOCABS = [6, 512, 50257, 152064];

/** The same setup on the CPU reference and on the GPU. */
function both(s: Setup): [Io, Io] {
  return [new Io(cpu, s), new Io(gpu(), s)];
}

// ---- comparisons ----

function sameFloat(a: number, b: number, tol: number): boolean {
  if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return true;
  return tol > 0 && Number.isFinite(a) && Number.isFinite(b) && Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
}

function assertFloats(actual: Float32Array, expected: Float32Array, tol: number, what: string, width = 0): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!sameFloat(actual[i], expected[i], tol)) {
      const at = width ? `row ${Math.floor(i / width)}, column ${i % width}` : `${i}`;
      assert.fail(`${what} at ${at}: ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

function assertInts(actual: Int32Array, expected: Int32Array, what: string, width = 0): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      const at = width ? `row ${Math.floor(i / width)}, column ${i % width}` : `${i}`;
      assert.fail(`${what} at ${at}: ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

describe('per-request sampling kernels against the CPU reference', { skip: skip ?? false }, () => {
  // ---- processLogits ----
  for (const V of VOCABS) {
    test(`processLogits: penalties, bad words, min-new, beam log-softmax, padding rows; V = ${V}`, () => {
      const rand = seededRandom(100 + V);
      const maxSeq = 64, tok = (i: number) => i % V;
      const L = [20, 0, 30, 12, 40, 25, 10, 33, 0, 18];
      const hist = Array.from({ length: 10 }, (_, s) => historyRow(L[s], maxSeq, V, rand));
      // bad words that end the history (so they apply) and some that do not
      const h4 = hist[4], h7 = hist[7], l4 = L[4], l7 = L[7];
      const reqs: (Request | undefined)[] = [
        JUNK,
        { mode: MODE.SAMPLE, temperature: 0.8 },
        { mode: MODE.SAMPLE, repetition: 1.3 },
        { mode: MODE.SAMPLE, frequency: 0.5, presence: 0.25, promptLen: 5 },
        {
          mode: MODE.SAMPLE, repetition: 0.8, frequency: 0.3, presence: -0.2, promptLen: 7, minNew: 50, eos: [tok(3), tok(V - 1), tok(11)],
          badWords: [[tok(2)], [h4[l4 - 1], tok(5)], [h4[l4 - 2], h4[l4 - 1], tok(7)], [tok(h4[l4 - 1] + 1), tok(9)], [h4[l4 - 3], h4[l4 - 2], h4[l4 - 1], tok(13)]],
        },
        { mode: MODE.SAMPLE, minNew: 3, promptLen: 20, eos: [tok(1), tok(4)], badWords: [[tok(V - 2), tok(V - 3), tok(0)]] },
        { mode: MODE.BEAM, candidates: 8 },
        { mode: MODE.BEAM, candidates: 6, repetition: 1.2, minNew: 100, eos: [tok(5)], badWords: [[h7[l7 - 1], tok(6)]] },
        { mode: MODE.SAMPLE, temperature: 0, repetition: 2, badWords: [[tok(4)], [tok(1), tok(3)]] },
        undefined,
      ];
      const slots = [4, 0, 2, 7, 1, 3, 3, 8, 6, 5, 4];
      const lengths = slots.map((s) => L[s]);
      lengths[10] = 15; // the same sequence at another length
      const styles: Style[] = ['random', 'ties', 'neginf', 'random', 'peaked', 'ties', 'random', 'neginf', 'sparse', 'flat', 'allneginf'];
      const setup: Setup = { V, logits: logitRows(styles, V, rand), slots, lengths, reqs, maxSeq, history: histories(hist, maxSeq) };
      const [c, g] = both(setup);
      const beamRows = slots.map((s) => reqs[s]?.mode === MODE.BEAM);
      for (const inPlace of [false, true]) {
        const want = (io: Io) => {
          const scores = inPlace ? io.logits : io.scores;
          io.ops.processLogits(scores, io.logits, io.rows, io.seqs, io.n);
          return io.floats(scores);
        };
        const a = want(g), e = want(c);
        for (let r = 0; r < slots.length; r++) {
          // penalties are exact float32 steps; only the beam rows' log-softmax has rounding
          assertFloats(a.subarray(r * V, (r + 1) * V), e.subarray(r * V, (r + 1) * V), beamRows[r] ? 1e-5 : 0,
            `scores of row ${r} (slot ${slots[r]}${inPlace ? ', in place' : ''})`);
        }
      }
    });
  }

  for (const V of VOCABS) {
    test(`processLogits: no repeated n-grams, forced BOS and forced EOS (encoder-decoder processors); V = ${V}`, () => {
      const rand = seededRandom(300 + V);
      const maxSeq = 48, tok = (i: number) => i % V;
      const L = [30, 25, 10, 3, 6, 8, 5, 12, 40, 20];
      // histories from 3 to 5 ids, so that n-grams repeat
      const hist = L.map((len, s) => historyRow(len, maxSeq, V, rand, 3 + (s % 3)));
      const reqs: (Request | undefined)[] = [
        { mode: MODE.SAMPLE, noRepeatNgram: 2 },
        { mode: MODE.BEAM, candidates: 6, noRepeatNgram: 3, promptLen: 1 },
        { mode: MODE.SAMPLE, temperature: 0, noRepeatNgram: 1 }, // every history token banned
        { mode: MODE.SAMPLE, noRepeatNgram: 5 }, // history shorter than the n-gram: nothing
        // the first generated token forced, over n-gram bans and bad words
        { mode: MODE.SAMPLE, forcedBos: tok(7), promptLen: 6, noRepeatNgram: 2, badWords: [[tok(7)]], maxNew: 9, forcedEos: tok(1) },
        // past the first token; the last allowed one (2 generated of 3) forced
        { mode: MODE.SAMPLE, forcedBos: tok(7), forcedEos: tok(V - 1), maxNew: 3, promptLen: 6 },
        { mode: MODE.BEAM, candidates: 4, forcedEos: tok(2), maxNew: 5, promptLen: 1, repetition: 1.4 },
        // forced EOS not yet due (4 generated of 10); n-grams and min-new still apply
        { mode: MODE.BEAM, candidates: 8, forcedEos: tok(3), maxNew: 10, promptLen: 8, noRepeatNgram: 2, minNew: 6, eos: [tok(3), tok(4)] },
        { ...JUNK, noRepeatNgram: 2, forcedBos: 0 },
        { mode: MODE.SAMPLE, noRepeatNgram: 4, repetition: 1.2, frequency: 0.3, promptLen: 5 },
      ];
      const slots = [4, 0, 2, 7, 1, 3, 5, 6, 8, 9, 4, 5];
      const lengths = slots.map((s) => L[s]);
      lengths[10] = 9; // slot 4 three tokens on: no longer forced
      lengths[11] = 7; // slot 5 one token on: neither forced
      const styles: Style[] = ['random', 'ties', 'neginf', 'random', 'peaked', 'ties', 'random', 'neginf', 'random', 'flat', 'random', 'sparse'];
      const setup: Setup = { V, logits: logitRows(styles, V, rand), slots, lengths, reqs, maxSeq, history: histories(hist, maxSeq) };
      const [c, g] = both(setup);
      for (const io of [c, g]) io.ops.processLogits(io.scores, io.logits, io.rows, io.seqs, io.n);
      const a = g.floats(g.scores), e = c.floats(c.scores);
      // the reference did ban and force (a test of the test)
      const row = (x: Float32Array, r: number) => x.subarray(r * V, (r + 1) * V);
      assert.equal(row(e, 0)[tok(7)], 0, 'forced BOS');
      assert.ok(row(e, 0).every((v, i) => i === tok(7) || v === -Infinity), 'forced BOS bans the rest');
      assert.equal(row(e, 6)[tok(V - 1)], 0, 'forced EOS');
      assert.ok(row(e, 6).every((v, i) => i === tok(V - 1) || v === -Infinity), 'forced EOS bans the rest');
      assert.ok(row(e, 1).some((v) => v === -Infinity), 'n-grams banned');
      slots.forEach((s, r) => assertFloats(row(a, r), row(e, r), reqs[s]?.mode === MODE.BEAM ? 1e-5 : 0, `row ${r} (slot ${s}, length ${lengths[r]})`));
    });
  }

  test('processLogits: long histories (thousands of tokens, many distinct) with every penalty', () => {
    const V = 50257, maxSeq = 4096, rand = seededRandom(7);
    const L = [4000, 3000, 4096, 1500];
    const hist = L.map((len, s) => historyRow(len, maxSeq, V, rand, s === 1 ? 3000 : 400));
    const reqs: Request[] = [
      { mode: MODE.SAMPLE, repetition: 1.1, frequency: 0.05, presence: 0.1, promptLen: 1000 },
      { mode: MODE.SAMPLE, repetition: 0.9, promptLen: 2999 },
      { mode: MODE.SAMPLE, frequency: 0.2, promptLen: 96 },
      { mode: MODE.BEAM, candidates: 4, repetition: 1.5, presence: 0.5, promptLen: 700 },
    ];
    const slots = [2, 0, 3, 1];
    const setup: Setup = { V, logits: logitRows(['random', 'peaked', 'ties', 'random'], V, rand), slots, lengths: slots.map((s) => L[s]), reqs, maxSeq, history: histories(hist, maxSeq) };
    const [c, g] = both(setup);
    for (const io of [c, g]) io.ops.processLogits(io.scores, io.logits, io.rows, io.seqs, io.n);
    const a = g.floats(g.scores), e = c.floats(c.scores);
    slots.forEach((s, r) => assertFloats(a.subarray(r * V, (r + 1) * V), e.subarray(r * V, (r + 1) * V), reqs[s].mode === MODE.BEAM ? 1e-5 : 0, `row ${r}`));
  });

  // ---- selectCandidates ----
  for (const V of VOCABS) {
    test(`selectCandidates: greedy, top-k 1..64, beams, rows without candidates, ties and -Infinity; V = ${V}`, () => {
      const rand = seededRandom(200 + V);
      const reqs: (Request | undefined)[] = [
        { mode: MODE.SAMPLE, temperature: 0, topK: 7 },
        JUNK,
        { mode: MODE.SAMPLE, topK: 1 },
        { mode: MODE.SAMPLE, topK: 5, temperature: 0.7 },
        { mode: MODE.SAMPLE, topK: 40 },
        { mode: MODE.SAMPLE, topK: 64 },
        { mode: MODE.SAMPLE, topK: 100 }, // the full path draws it: no candidates
        { mode: MODE.SAMPLE, topK: 0, topP: 0.9 },
        { mode: MODE.BEAM, candidates: 8 },
        { mode: MODE.BEAM, candidates: 64 },
        undefined,
      ];
      const styles: Style[] = ['random', 'ties', 'periodic', 'flat', 'neginf', 'sparse', 'peaked', 'allneginf'];
      const slots: number[] = [], rowStyles: Style[] = [];
      // every request over several styles, in an order that is not the slot order
      for (let j = 0; j < 3; j++) {
        for (let s = reqs.length - 1; s >= 0; s--) {
          slots.push(s);
          rowStyles.push(styles[(s * 3 + j * 5) % styles.length]);
        }
      }
      const setup: Setup = { V, logits: logitRows(rowStyles, V, rand), slots, lengths: slots.map(() => 0), reqs, maxSeq: 1, history: new Int32Array(reqs.length) };
      const [c, g] = both(setup);
      c.ops.selectCandidates(c.cand, c.logits, c.rows, c.seqs, c.n, c.status);
      const ev = c.floats(c.cand.values), ei = c.ints(c.cand.ids), es = c.ints(c.status);
      for (const cap of [undefined, 0]) {
        const gc = g.scratch; // the radix run writes the second set of candidates, still at its sentinels
        if (cap === undefined) g.ops.selectCandidates(g.cand, g.logits, g.rows, g.seqs, g.n, g.status);
        else selectOp(gpu().ctx, gc, g.logits, g.rows, g.seqs, g.n, g.status2, cap);
        const out = cap === undefined ? g.cand : gc;
        const how = cap === undefined ? 'filter' : 'radix';
        assertInts(g.ints(out.ids), ei, `candidate ids (${how})`, MAX_CANDIDATES);
        assertFloats(g.floats(out.values), ev, 0, `candidate values (${how})`, MAX_CANDIDATES);
        assertInts(g.ints(cap === undefined ? g.status : g.status2), es, `status (${how})`);
      }
    });
  }

  for (const V of VOCABS) {
    test(`selectCandidates status: NaN and +Infinity anywhere in a row, in every mode; padding rows untouched; V = ${V}`, () => {
      const rand = seededRandom(250 + V);
      const reqs: (Request | undefined)[] = [
        { mode: MODE.SAMPLE, temperature: 0 },
        { mode: MODE.SAMPLE, topK: 40 },
        { mode: MODE.SAMPLE, topK: 0, topP: 0.9 }, // no candidates: the status is still written
        { mode: MODE.BEAM, candidates: 8 },
        JUNK,
      ];
      // per row: where a bad value goes (the first, the last, a chunk boundary, everywhere) and which one
      const cases: { at: 'none' | 'first' | 'last' | 'middle' | 'all'; value: number }[] = [
        { at: 'none', value: 0 }, { at: 'first', value: NaN }, { at: 'last', value: Infinity }, { at: 'middle', value: NaN },
        { at: 'all', value: NaN }, { at: 'middle', value: -Infinity }, { at: 'last', value: -NaN }, { at: 'first', value: Infinity },
      ];
      const slots: number[] = [], rows: Float32Array[] = [];
      cases.forEach((k, j) => {
        for (let s = 0; s < reqs.length; s++) {
          const x = logitRow(j % 2 ? 'random' : 'neginf', V, rand);
          if (k.at === 'all') x.fill(k.value);
          else if (k.at !== 'none') x[k.at === 'first' ? 0 : k.at === 'last' ? V - 1 : Math.floor(V / 2)] = k.value;
          slots.push((s + j) % reqs.length);
          rows.push(x);
        }
      });
      const logits = new Float32Array(rows.length * V);
      rows.forEach((x, r) => logits.set(x, r * V));
      const setup: Setup = { V, logits, slots, lengths: slots.map(() => 0), reqs, maxSeq: 1, history: new Int32Array(reqs.length) };
      const [c, g] = both(setup);
      for (const io of [c, g]) io.ops.selectCandidates(io.cand, io.logits, io.rows, io.seqs, io.n, io.status);
      const es = c.ints(c.status);
      slots.forEach((s, r) => {
        const k = cases[Math.floor(r / reqs.length)];
        const want = reqs[s]!.mode === MODE.NONE ? ID_SENTINEL : k.at !== 'none' && !(k.value < Infinity) ? 1 : 0;
        assert.equal(es[r], want, `CPU status of row ${r} (${JSON.stringify(k)}, slot ${s})`);
      });
      assertInts(g.ints(g.status), es, 'status');
    });
  }

  // ---- sample ----
  for (const V of VOCABS) {
    const rowCount = V === 6 ? 48 : V === 512 ? 220 : V === 50257 ? 110 : 28;
    test(`sample: greedy, top-k, top-k > 64, top-p, min-p, decay and reset ids, padding rows; V = ${V}, ${rowCount} rows`, () => {
      const rand = seededRandom(300 + V);
      const maxSeq = 48;
      const tok = (i: number) => i % V;
      const configs: Request[] = [
        { mode: MODE.SAMPLE, temperature: 0 },
        { mode: MODE.SAMPLE, temperature: 0.7, topK: 40 },
        { mode: MODE.SAMPLE, temperature: 1, topK: 64, topP: 0.9 },
        { mode: MODE.SAMPLE, temperature: 1.2, topK: 5, minP: 0.1 },
        { mode: MODE.SAMPLE, temperature: 1, topK: 1 },
        { mode: MODE.SAMPLE, temperature: 1 },
        { mode: MODE.SAMPLE, temperature: 0.9, topP: 0.8 },
        { mode: MODE.SAMPLE, temperature: 1.1, minP: 0.05 },
        { mode: MODE.SAMPLE, temperature: 1, topP: 0.5, minP: 0.01 },
        { mode: MODE.SAMPLE, temperature: 1, topK: 100 },
        { mode: MODE.SAMPLE, temperature: 0.8, topK: 1000, topP: 0.7 },
        { mode: MODE.SAMPLE, temperature: 1, topK: V + 3, topP: 0.95 },
        { mode: MODE.SAMPLE, temperature: 1, topK: 20, topP: 0.95, decay: 0.9, topPMin: 0.5, resets: [] },
        { mode: MODE.SAMPLE, temperature: 0.6, topP: 0.9, decay: 0.8, topPMin: 0.3, resets: [] },
        { mode: MODE.SAMPLE, temperature: 0, repetition: 1.5, decay: 0.5, topP: 0.9, topPMin: 0.2 },
        { mode: MODE.SAMPLE, temperature: 1.3, topK: 70, repetition: 1.2, frequency: 0.3, badWords: [[tok(3)]] },
        JUNK,
        { mode: MODE.BEAM, candidates: 4 },
      ];
      const styles: Style[] = ['random', 'ties', 'peaked', 'neginf', 'periodic', 'flat', 'sparse'];
      const nslots = rowCount + 7;
      const reqs: (Request | undefined)[] = new Array(nslots).fill(undefined);
      const slots: number[] = [], lengths: number[] = [], rowStyles: Style[] = [];
      const order = Array.from({ length: nslots }, (_, i) => i);
      for (let i = nslots - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      const hist: Int32Array[] = Array.from({ length: nslots }, () => historyRow(Math.floor(rand() * maxSeq), maxSeq, V, rand));
      for (let r = 0; r < rowCount; r++) {
        const s = order[r];
        reqs[s] = { ...configs[r % configs.length], seed: Math.floor(rand() * 2 ** 32), stream: r * 7 };
        slots.push(s);
        rowStyles.push(styles[(r * 5 + Math.floor(r / configs.length)) % styles.length]);
        lengths.push(r % 9 === 0 ? maxSeq : Math.floor(rand() * maxSeq)); // at maxSeq the token is not stored
      }
      const topP = Float32Array.from(reqs, (q) => (q ? Math.min(1, (q.topP ?? 1) * (rand() < 0.5 ? 1 : 0.8)) : 0.5));
      const logits = logitRows(rowStyles, V, rand);
      // reset ids: the likeliest tokens of the row, so that some draws reset the runtime top-p
      for (let r = 0; r < rowCount; r++) {
        const q = reqs[slots[r]]!;
        if (!q.resets) continue;
        const row = logits.subarray(r * V, (r + 1) * V);
        const best = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b).slice(0, 3);
        q.resets = best;
      }
      const setup: Setup = { V, logits, slots, lengths, reqs, maxSeq, history: histories(hist, maxSeq), topP };
      const [c, g] = both(setup);
      for (const io of [c, g]) {
        io.ops.processLogits(io.scores, io.logits, io.rows, io.seqs, io.n);
        io.ops.selectCandidates(io.cand, io.scores, io.rows, io.seqs, io.n, io.status);
        io.ops.sample(io.ids, io.scores, io.cand, io.rows, io.seqs, io.n);
      }
      const a = g.ints(g.ids), e = c.ints(c.ids);
      const ah = g.ints(g.seqs.history), eh = c.ints(c.seqs.history);
      const ap = g.floats(g.seqs.topP), ep = c.floats(c.seqs.topP);
      let seeded = 0, differ = 0;
      const notes: string[] = [];
      for (let r = 0; r < rowCount; r++) {
        const s = slots[r], q = reqs[s]!;
        const drawn = q.mode === MODE.SAMPLE && (q.temperature ?? 1) !== 0;
        if (drawn) seeded++;
        if (a[r] !== e[r]) {
          assert.ok(drawn, `row ${r} (${JSON.stringify(q)}): token ${a[r]}, expected ${e[r]}`);
          differ++;
          notes.push(`row ${r} ${rowStyles[r]} ${JSON.stringify({ ...q, seed: undefined, resets: undefined })}: ${a[r]} vs ${e[r]}`);
          // everything else of the row follows from the token: compare the history without it
          const ha = ah.slice(s * maxSeq, (s + 1) * maxSeq), he = eh.slice(s * maxSeq, (s + 1) * maxSeq);
          if (lengths[r] < maxSeq) ha[lengths[r]] = he[lengths[r]];
          assertInts(ha, he, `history of slot ${s}`);
          continue;
        }
        assertInts(ah.subarray(s * maxSeq, (s + 1) * maxSeq), eh.subarray(s * maxSeq, (s + 1) * maxSeq), `history of slot ${s} (row ${r})`);
        assert.equal(ap[s], ep[s], `runtime top-p of slot ${s} (row ${r}, ${JSON.stringify(q)})`);
      }
      // slots no row draws for keep their top-p
      for (let s = 0; s < nslots; s++) if (!slots.includes(s)) assert.equal(ap[s], ep[s], `top-p of unused slot ${s}`);
      const allowed = Math.max(1, Math.floor(seeded / 100));
      assert.ok(differ <= allowed, `${differ} of ${seeded} seeded draws differ (at most ${allowed}):\n${notes.join('\n')}`);
    });
  }

  // ---- logprobs ----
  for (const V of VOCABS) {
    test(`logprobs: K = 0, 1, 5 and 20, rows without log-probs, ties and -Infinity; V = ${V}`, () => {
      const rand = seededRandom(400 + V);
      const reqs: (Request | undefined)[] = [
        { mode: MODE.SAMPLE, logprobs: 20 },
        JUNK,
        { mode: MODE.SAMPLE, logprobs: -1 },
        { mode: MODE.SAMPLE, logprobs: 0, temperature: 0 },
        { mode: MODE.SAMPLE, logprobs: 1 },
        { mode: MODE.SAMPLE, logprobs: 5, topK: 10 },
        { mode: MODE.BEAM, logprobs: 3, candidates: 6 },
        undefined,
        { mode: MODE.BEAM, logprobs: 20, candidates: 4 },
      ];
      const styles: Style[] = ['random', 'ties', 'periodic', 'flat', 'neginf', 'sparse', 'peaked', 'allneginf'];
      const slots: number[] = [], rowStyles: Style[] = [];
      for (let j = 0; j < 2; j++) {
        for (const s of [8, 3, 0, 1, 5, 2, 6, 4, 7, 0]) {
          slots.push(s);
          rowStyles.push(styles[(slots.length * 3 + j) % styles.length]);
        }
      }
      const logits = logitRows(rowStyles, V, rand);
      const setup: Setup = { V, logits, slots, lengths: slots.map(() => 0), reqs, maxSeq: 1, history: new Int32Array(reqs.length) };
      const [c, g] = both(setup);
      // the drawn tokens: any id, a finite one where the row has one
      const drawn = Int32Array.from(slots, (_, r) => {
        const row = logits.subarray(r * V, (r + 1) * V);
        const finite = Array.from(row.keys()).filter((i) => Number.isFinite(row[i]));
        return finite.length && rand() < 0.8 ? finite[Math.floor(rand() * finite.length)] : Math.floor(rand() * V);
      });
      for (const io of [c, g]) io.b.writeInt(io.ids, drawn, drawn.length);
      c.ops.logprobs(c.out, c.logits, c.ids, c.rows, c.seqs, c.n, c.scratch);
      const e = c.ints(c.out);
      for (const cap of [undefined, 0]) {
        g.b.writeInt(g.out, new Int32Array(g.n * LOGPROB_STRIDE).fill(OUT_SENTINEL), g.n * LOGPROB_STRIDE);
        if (cap === undefined) g.ops.logprobs(g.out, g.logits, g.ids, g.rows, g.seqs, g.n, g.scratch);
        else logprobsOp(gpu().ctx, g.out, g.logits, g.ids, g.rows, g.seqs, g.n, g.scratch, cap);
        const a = g.ints(g.out);
        const af = new Float32Array(a.buffer), ef = new Float32Array(e.buffer);
        for (let r = 0; r < g.n; r++) {
          for (let j = 0; j < LOGPROB_STRIDE; j++) {
            const i = r * LOGPROB_STRIDE + j;
            const what = `out row ${r} (slot ${slots[r]}, ${rowStyles[r]}${cap === 0 ? ', radix' : ''}) entry ${j}`;
            // entry 0 and the even entries are log-probs (f32 bits) once written; sentinels compare as ints
            const isLogProb = (j === 0 || j % 2 === 0) && e[i] !== OUT_SENTINEL;
            if (isLogProb) assert.ok(sameFloat(af[i], ef[i], 1e-5), `${what}: ${af[i]}, expected ${ef[i]}`);
            else assert.equal(a[i], e[i], what);
          }
        }
      }
    });
  }

  // ---- advance ----
  test('advance moves only the rows whose sequence samples on the device', () => {
    const reqs: (Request | undefined)[] = [{ mode: MODE.SAMPLE }, JUNK, { mode: MODE.BEAM, candidates: 4 }, undefined, { mode: MODE.SAMPLE, temperature: 0 }];
    const slots = [4, 1, 0, 2, 3, 0, 4];
    const setup: Setup = { V: 6, logits: new Float32Array(slots.length * 6), slots, lengths: slots.map(() => 0), reqs, maxSeq: 1, history: new Int32Array(reqs.length) };
    const positions = Int32Array.from(slots, (_, i) => 10 * i), keyLens = Int32Array.from(slots, (_, i) => 10 * i + 1);
    const [c, g] = both(setup);
    const result = (io: Io) => {
      const p = ints(io.b, positions, [slots.length]), k = ints(io.b, keyLens, [slots.length]);
      io.ops.advance(p, k, io.rows, io.seqs, io.n);
      return [io.ints(p), io.ints(k)];
    };
    const [ep, ek] = result(c), [ap, ak] = result(g);
    assertInts(ap, ep, 'positions');
    assertInts(ak, ek, 'key lengths');
    assert.deepEqual(Array.from(ap), [1, 10, 21, 30, 40, 51, 61]);
  });

  // ---- a captured decode step ----
  test('the ops captured in a graph: three steps replayed with device-side lengths and histories', () => {
    const V = 512, maxSeq = 16, rand = seededRandom(500);
    const reqs: (Request | undefined)[] = [
      undefined,
      { mode: MODE.SAMPLE, temperature: 0, repetition: 3, logprobs: 3 },
      { mode: MODE.SAMPLE, temperature: 0.5, topK: 8, frequency: 2, logprobs: 0, decay: 0.9, topP: 0.95, topPMin: 0.5 },
      JUNK,
      { mode: MODE.SAMPLE, temperature: 0.7, topP: 0.9, repetition: 2, badWords: [[7, 9]] },
      { mode: MODE.BEAM, candidates: 4, logprobs: 2 },
    ];
    const slots = [4, 2, 5, 1, 3];
    const lengths = [3, 5, 4, 2, 6];
    const hist = reqs.map(() => historyRow(6, maxSeq, V, rand, 4));
    const setup: Setup = { V, logits: logitRows(['peaked', 'random', 'random', 'peaked', 'ties'], V, rand), slots, lengths, reqs, maxSeq, history: histories(hist, maxSeq) };
    const [c, g] = both(setup);
    // rows.lengths doubles as positions, as in a decode step: advance moves it, the next draw lands after
    const keyLens = (io: Io) => ints(io.b, Int32Array.from(lengths, (l) => l + 1), [slots.length]);
    const kc = keyLens(c), kg = keyLens(g);
    const step = (io: Io, k: Tensor) => {
      io.ops.processLogits(io.scores, io.logits, io.rows, io.seqs, io.n);
      io.ops.selectCandidates(io.cand, io.scores, io.rows, io.seqs, io.n, io.status);
      io.ops.sample(io.ids, io.scores, io.cand, io.rows, io.seqs, io.n);
      io.ops.logprobs(io.out, io.logits, io.ids, io.rows, io.seqs, io.n, io.scratch);
      io.ops.advance(io.rows.lengths, k, io.rows, io.seqs, io.n);
    };
    for (let i = 0; i < 3; i++) {
      step(c, kc);
      g.b.graph('sampling-test-step', () => step(g, kg)); // eager, then captured, then replayed
      assertInts(g.ints(g.ids), c.ints(c.ids), `ids of step ${i}`);
      assertInts(g.ints(g.rows.lengths), c.ints(c.rows.lengths), `positions after step ${i}`);
      assertInts(g.ints(kg), c.ints(kc), `key lengths after step ${i}`);
      assertInts(g.ints(g.seqs.history), c.ints(c.seqs.history), `histories after step ${i}`);
      assertFloats(g.floats(g.seqs.topP), c.floats(c.seqs.topP), 0, `runtime top-p after step ${i}`);
      const a = g.ints(g.out), e = c.ints(c.out);
      const af = new Float32Array(a.buffer), ef = new Float32Array(e.buffer);
      for (let j = 0; j < a.length; j++) {
        const isLogProb = (j % LOGPROB_STRIDE === 0 || (j % LOGPROB_STRIDE) % 2 === 0) && e[j] !== OUT_SENTINEL;
        if (isLogProb) assert.ok(sameFloat(af[j], ef[j], 1e-5), `log-prob ${j} of step ${i}: ${af[j]} vs ${ef[j]}`);
        else assert.equal(a[j], e[j], `logprobs entry ${j} of step ${i}`);
      }
    }
    assert.ok(gpu().graphNodes('sampling-test-step') >= 7, 'the step was captured');
  });
});
