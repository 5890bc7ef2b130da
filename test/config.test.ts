// Config fields that change the computation are computed as Hugging Face computes them, or refused by name.
// Each GPT-2 and BERT variant runs on the CPU against a float64 forward written from the Hugging Face
// definitions (helpers/naive-*.ts, sharing no code with the op set), and each variant is first shown to
// matter: its reference differs from the unmodified model's, so a field that is ignored fails its test.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { inspectModel, loadEmbedder, loadGenerator, loadModel, PeregrineError } from '../src/index.js';
import { writeBert, writeGpt2 } from './helpers/checkpoints.js';
import { maxRelError } from './helpers/close.js';
import { fixture } from './helpers/fixtures.js';
import { allLogits } from './helpers/logits.js';
import { naiveBert } from './helpers/naive-bert.js';
import { naiveGpt2Greedy, naiveGpt2Logits } from './helpers/naive-gpt2.js';
import { BERT_VARIANTS, GPT2_VARIANTS } from './helpers/variants.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-config-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const fresh = () => join(root, `m${dirs++}`);

const IDS = [5, 17, 3, 88, 42, 9, 60, 1, 77];
/** fp32 against float64 (errors here are about 1e-6); a variant must move the reference ten times as far */
const TOL = 1e-5;

/** The largest relative difference between two sets of logit rows (relative to the largest |logit| of each row). */
function rowsError(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  return Math.max(...a.map((r, i) => maxRelError(r, b[i])));
}

describe('GPT-2 config fields, against a float64 reference forward', () => {
  const base = writeGpt2(fresh());
  const baseLogits = naiveGpt2Logits(base.config, base.weights, IDS);

  for (const [name, changes, differs] of GPT2_VARIANTS) {
    test(name, async () => {
      const ck = writeGpt2(fresh(), changes);
      const want = naiveGpt2Logits(ck.config, ck.weights, IDS);
      const change = rowsError(want, baseLogits);
      if (differs) assert.ok(change > 10 * TOL, `the field changes the logits (by ${change.toExponential(2)})`);
      else assert.ok(change < 1e-6, `the same function as gelu_new (${change.toExponential(2)})`);
      const gen = await loadGenerator(ck.dir, { device: 'cpu' });
      const V = gen.model.info.vocabSize;
      const got = await allLogits(gen, IDS);
      const rows = IDS.map((_, p) => got.subarray(p * V, (p + 1) * V));
      const err = rowsError(rows, want);
      assert.ok(err < TOL, `logits within ${TOL} of the reference: ${err.toExponential(2)}`);
      const [r] = await gen.generateIds([IDS.slice(0, 4)], { maxNewTokens: 8, stopAtEos: false });
      assert.deepEqual(r.ids, naiveGpt2Greedy(ck.config, ck.weights, IDS.slice(0, 4), 8), 'greedy tokens');
      gen.dispose();
    });
  }
});

describe('BERT config fields, against a float64 reference forward', () => {
  const seqs = [[2, 50, 7, 33, 90, 3], [2, 11, 3]];
  const base = writeBert(fresh(), {}, 3);
  const baseOut = seqs.map((s) => naiveBert(base.config, base.weights, s, 'bert.'));
  for (const [name, changes, differs] of BERT_VARIANTS) {
    test(name, async () => {
      const ck = writeBert(fresh(), changes, 3);
      const want = seqs.map((s) => naiveBert(ck.config, ck.weights, s, 'bert.'));
      if (differs) {
        const change = Math.max(...want.map((w, i) => rowsError(w.hidden, baseOut[i].hidden)));
        assert.ok(change > 10 * TOL, `the field changes the hidden states (by ${change.toExponential(2)})`);
      }
      const emb = await loadEmbedder(ck.dir, { device: 'cpu' });
      const out = emb.model.encode(seqs.map((s) => Int32Array.from(s)), { classify: true });
      const H = emb.model.info.hidden;
      want.forEach((w, i) => {
        const got = w.hidden.map((_, t) => out.hidden.subarray((out.starts[i] + t) * H, (out.starts[i] + t + 1) * H));
        assert.ok(rowsError(got, w.hidden) < TOL, `hidden states of input ${i}: ${rowsError(got, w.hidden).toExponential(2)}`);
        const logits = out.logits!.subarray(i * 3, (i + 1) * 3);
        assert.ok(maxRelError(logits, w.logits!) < TOL, `classification logits of input ${i}`);
      });
      emb.dispose();
    });
  }
});

describe('config fields Peregrine does not compute are refused by name', () => {
  const refused = async (dir: string, code: string, pattern: RegExp) => {
    for (const load of [() => loadModel(dir, { device: 'cpu' }), () => inspectModel(dir, { device: 'cpu' })]) {
      await assert.rejects(load(), (err: unknown) => {
        assert.ok(err instanceof PeregrineError, String(err));
        assert.equal(err.code, code, err.message);
        assert.match(err.message, pattern);
        assert.ok(!err.message.includes('\n'));
        return true;
      });
    }
  };

  test('GPT-2', async () => {
    await refused(writeGpt2(fresh(), { activation_function: 'mish' }).dir, 'unsupported-config',
      /GPT-2 config: activation_function "mish" is not supported \(Peregrine computes gelu, .*relu, .*\)/);
    await refused(writeGpt2(fresh(), { activation_function: 'gelu_10' }).dir, 'unsupported-config', /activation_function "gelu_10"/);
    await refused(writeGpt2(fresh(), { activation_function: 'toString' }).dir, 'unsupported-config', /activation_function "toString"/);
    await refused(writeGpt2(fresh(), { pruned_heads: { 1: [0, 2] } }).dir, 'unsupported-config', /pruned_heads \{"1":\[0,2\]\} is not supported/);
    await refused(writeGpt2(fresh(), { scale_attn_weights: 'yes' }).dir, 'bad-config', /field "scale_attn_weights" must be true or false, got "yes"/);
    await refused(writeGpt2(fresh(), { scale_attn_by_inverse_layer_idx: 1 }).dir, 'bad-config', /field "scale_attn_by_inverse_layer_idx" must be true or false/);
    await refused(writeGpt2(fresh(), { reorder_and_upcast_attn: 'true' }).dir, 'bad-config', /field "reorder_and_upcast_attn" must be true or false/);
    await refused(writeGpt2(fresh(), { layer_norm_epsilon: -1 }).dir, 'bad-config', /field "layer_norm_epsilon" must be a positive number/);
    // an empty pruned_heads, as Hugging Face writes it, is fine
    (await loadModel(writeGpt2(fresh(), { pruned_heads: {} }).dir, { device: 'cpu' })).kind;
  });

  test('BERT', async () => {
    await refused(writeBert(fresh(), { hidden_act: 'gelu_10' }).dir, 'unsupported-config', /BERT config: hidden_act "gelu_10" is not supported/);
    await refused(writeBert(fresh(), { position_embedding_type: 'relative_key' }).dir, 'unsupported-config', /position_embedding_type "relative_key" is not supported/);
    await refused(writeBert(fresh(), { pruned_heads: { 0: [1] } }).dir, 'unsupported-config', /pruned_heads/);
    await refused(writeBert(fresh(), { layer_norm_eps: 0 }).dir, 'bad-config', /field "layer_norm_eps" must be a positive number/);
    (await loadModel(writeBert(fresh(), { is_decoder: false, position_embedding_type: 'absolute' }).dir, { device: 'cpu' })).kind;
    // is_decoder attends causally (BertLMHeadModel; test/bert-family.test.ts checks it against Hugging Face)
    const decoder = await loadModel(writeBert(fresh(), { is_decoder: true }).dir, { device: 'cpu' });
    assert.equal(decoder.kind === 'encoder' && decoder.embedder.model.model.causal, true);
  });
});

describe('Llama-family config fields', () => {
  /** A copy of fixture `name` (tokenizer files resolved) whose config.json has `edits` merged in (undefined deletes). */
  const variant = (name: string, edits: Record<string, unknown>): string => {
    const dir = fresh();
    cpSync(fixture(name), dir, { recursive: true, dereference: true });
    const path = join(dir, 'config.json');
    const config = { ...JSON.parse(readFileSync(path, 'utf8')), ...edits };
    for (const [k, v] of Object.entries(edits)) if (v === undefined) delete config[k];
    writeFileSync(path, JSON.stringify(config));
    return dir;
  };
  const refusedLlama = async (dir: string, code: string, pattern: RegExp) => {
    await assert.rejects(loadModel(dir, { device: 'cpu' }), (err: unknown) => {
      assert.ok(err instanceof PeregrineError, String(err));
      assert.equal(err.code, code, err.message);
      assert.match(err.message, pattern);
      return true;
    });
  };

  test('what Peregrine does not compute is refused by name', async () => {
    await refusedLlama(variant('llama-tiny', { partial_rotary_factor: 0.5 }), 'unsupported-config', /partial_rotary_factor 0.5 is not supported/);
    await refusedLlama(variant('llama-tiny', { rope_parameters: { rope_type: 'longrope', rope_theta: 10000 } }), 'unsupported-config', /rope type "longrope" is not supported/);
    await refusedLlama(variant('llama-tiny', { hidden_act: 'gelu_10' }), 'unsupported-config', /hidden_act "gelu_10" is not supported/);
    await refusedLlama(variant('llama-tiny', { num_key_value_heads: 3 }), 'bad-config', /num_attention_heads \(4\) is not a multiple of num_key_value_heads \(3\)/);
    await refusedLlama(variant('llama-tiny', { rope_parameters: { rope_type: 'llama3', rope_theta: 10000, factor: 8 } }), 'bad-config', /rope scaling field "low_freq_factor" is missing/);
    await refusedLlama(variant('qwen2-tiny', { use_sliding_window: true, sliding_window: 8, layer_types: ['full_attention'] }), 'bad-config', /"layer_types" must list/);
  });

  test('the transformers 4 spelling (rope_theta, rope_scaling) computes what the 5 spelling (rope_parameters) does', async () => {
    const raw = JSON.parse(readFileSync(join(fixture('llama3-tiny'), 'config.json'), 'utf8'));
    const { rope_theta: theta, ...scaling } = raw.rope_parameters;
    const old = variant('llama3-tiny', { rope_parameters: undefined, rope_theta: theta, rope_scaling: scaling });
    const ids = [826, 39, 588, 11, 637, 0, 220];
    const [a, b] = await Promise.all([fixture('llama3-tiny'), old].map(async (dir) => allLogits(await loadGenerator(dir, { device: 'cpu' }), ids)));
    assert.equal(maxRelError(a, b), 0);
  });

  test('a sliding window matters, and Qwen2 keeps full attention unless use_sliding_window', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => 3 + ((i * 37) % 800));
    const logits = async (dir: string) => allLogits(await loadGenerator(dir, { device: 'cpu' }), ids);
    const windowed = await logits(fixture('mistral-tiny'));
    const full = await logits(variant('mistral-tiny', { sliding_window: null }));
    assert.ok(maxRelError(windowed, full) > 1e-3, 'the window of 12 changes logits of a 30-token prompt');
    const qwen = await logits(fixture('qwen2-tiny'));
    assert.equal(maxRelError(await logits(variant('qwen2-tiny', { sliding_window: 4, use_sliding_window: false })), qwen), 0);
    const layered = await logits(variant('qwen2-tiny', { sliding_window: 4, use_sliding_window: true, layer_types: ['full_attention', 'sliding_attention'] }));
    assert.ok(maxRelError(layered, qwen) > 1e-3, 'layer_types puts the window on layer 1');
    // without layer_types, max_window_layers says which layers slide (those from it on)
    const byCount = await logits(variant('qwen2-tiny', { sliding_window: 4, use_sliding_window: true, layer_types: undefined, max_window_layers: 1 }));
    assert.equal(maxRelError(byCount, layered), 0);
  });
});
