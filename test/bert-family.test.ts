// The BERT family on the CPU backend against Hugging Face transformers (fixtures made by
// tools/reference/make_bert_family_fixtures.py): BERT with every head, RoBERTa, XLM-RoBERTa, DistilBERT and a
// sentence-transformers directory; fill-mask, token classification, the token-id API and the errors of bad configs.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadEmbedder, loadModel } from '../src/index.js';
import { assertClose, flat } from './helpers/close.js';
import { FAMILY_FIXTURES, fixture, reference, type FamilyRef } from './helpers/fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-bert-family-'));
after(() => rmSync(root, { recursive: true, force: true }));
let copies = 0;

/** A copy of fixture `name` (files, not links) with `edit` applied to it. */
function variant(name: string, edit: (dir: string) => void): string {
  const dir = join(root, `${name}-${copies++}`);
  cpSync(fixture(name), dir, { recursive: true, dereference: true });
  edit(dir);
  return dir;
}

function editJson(path: string, change: (j: any) => void): void {
  const j = JSON.parse(readFileSync(path, 'utf8'));
  change(j);
  writeFileSync(path, JSON.stringify(j));
}

function normalized(v: number[]): number[] {
  const n = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  return v.map((x) => x / n);
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Every packed row of the token head's output, per input and position. */
function tokenRow(seqs: Int32Array[], input: number, position: number, width: number, logits: Float32Array): Float32Array {
  const start = seqs.slice(0, input).reduce((a, s) => a + s.length, 0);
  return logits.subarray((start + position) * width, (start + position + 1) * width);
}

for (const [name, className] of FAMILY_FIXTURES) {
  describe(`${name} (${className}) matches Hugging Face`, async () => {
    const ref = reference<FamilyRef>(name);
    const emb = await loadEmbedder(fixture(name), { device: 'cpu' });
    const seqs = ref.inputs.map((x) => Int32Array.from(x.ids));
    const H = emb.model.info.hidden;

    test('architecture and tokenization', () => {
      assert.equal(emb.model.info.architecture, className);
      for (const x of ref.inputs) assert.deepEqual(emb.tokenizer.encode(x.text), x.ids, x.text);
    });

    test('last hidden states and mean pooling within 1e-4, one packed batch of mixed lengths', () => {
      const out = emb.model.encode(seqs, { pooling: 'mean' });
      ref.hidden?.forEach((h, i) => assertClose(out.hidden.subarray(out.starts[i] * H, (out.starts[i] + out.lengths[i]) * H), flat(h), 1e-4, `input ${i} hidden states`));
      assertClose(out.pooled!, flat(ref.mean), 1e-4, 'mean pooled');
    });

    if (ref.logits) {
      test('sequence-classification logits within 1e-4, from ids and from text', () => {
        assertClose(emb.classifyIds(ref.inputs.map((x) => x.ids)).flatMap((c) => c.logits), flat(ref.logits), 1e-4, 'classifyIds logits');
        const labels = emb.classify(ref.inputs.map((x) => x.text));
        labels.forEach((c, i) => {
          assertClose(c.logits, ref.logits![i], 1e-4, `classify() logits ${i}`);
          assert.equal(c.label, emb.model.labels[argmax(ref.logits![i])]);
        });
      });
    }

    if (ref.token_logits) {
      test('token-classification logits within 1e-4, and each token\'s label', () => {
        const L = emb.model.numLabels;
        const out = emb.model.encode(seqs, { tokens: true });
        ref.token_logits!.forEach((rows, i) => rows.forEach((row, p) => assertClose(tokenRow(seqs, i, p, L, out.tokenLogits!), row, 1e-4, `input ${i} token ${p}`)));
        const byIds = emb.classifyTokenIds(ref.inputs.map((x) => x.ids));
        const byText = emb.classifyTokens(ref.inputs.map((x) => x.text));
        ref.token_logits!.forEach((rows, i) => {
          assert.deepEqual(byIds[i].map((t) => t.label), rows.map((row) => emb.model.labels[argmax(row)]), `labels of input ${i}`);
          // the text form leaves out [CLS] and [SEP]
          assert.deepEqual(byText[i].map((t) => t.index), ref.inputs[i].ids.map((_, p) => p).slice(1, -1));
          assert.deepEqual(byText[i].map((t) => t.label), byIds[i].slice(1, -1).map((t) => t.label));
          for (const t of byText[i]) assert.equal(t.token, emb.tokenizer.tokenText(t.id));
        });
      });
    }

    if (ref.lm_rows) {
      test('LM-head logits within 1e-4 at the rows asked for', () => {
        const V = emb.model.info.vocabSize;
        const starts = seqs.map((_, i) => seqs.slice(0, i).reduce((a, s) => a + s.length, 0));
        const rows = ref.lm_rows!.map((r) => starts[r.input] + r.position);
        const out = emb.model.encode(seqs, { tokens: rows });
        ref.lm_rows!.forEach((r, k) => assertClose(out.tokenLogits!.subarray(k * V, (k + 1) * V), r.logits, 1e-4, `input ${r.input} position ${r.position}`));
      });
    }

    if (ref.fill_mask) {
      test('fill-mask: the top 5 tokens and their scores at every mask, from text and from ids', () => {
        const fromText = emb.fillMask(ref.inputs.map((x) => x.text), { topK: 5 });
        const fromIds = emb.fillMaskIds(ref.inputs.map((x) => x.ids));
        for (const fills of [fromText, fromIds]) {
          const got = fills.flatMap((f, input) => f.map((m) => ({ input, position: m.index, ids: m.predictions.map((p) => p.id), scores: m.predictions.map((p) => p.score) })));
          assert.deepEqual(got.map((g) => [g.input, g.position, g.ids]), ref.fill_mask!.map((g) => [g.input, g.position, g.ids]));
          got.forEach((g, i) => assertClose(g.scores, ref.fill_mask![i].scores, 1e-4, `scores of mask ${i}`));
        }
        for (const p of fromText[0][0].predictions) assert.equal(p.token, emb.tokenizer.decode([p.id], false));
        assert.equal(emb.fillMask([ref.inputs[1].text], { topK: 2 })[0][0].predictions.length, 2);
      });
    }
  });
}

describe('sentence-transformers directories', () => {
  const ref = reference<FamilyRef>('st-mini');
  const texts = ref.inputs.map((x) => x.text);

  test('modules.json and 1_Pooling choose the defaults: mean pooling, then Normalize', async () => {
    const emb = await loadEmbedder(fixture('st-mini'), { device: 'cpu' });
    emb.embed(texts).forEach((v, i) => assertClose(v, ref.mean_normalized![i], 1e-4, `default embedding ${i}`));
    // the call's options win
    emb.embed(texts, { normalize: false }).forEach((v, i) => assertClose(v, ref.mean[i], 1e-4, `unnormalized ${i}`));
    emb.embedIds(ref.inputs.map((x) => x.ids), { pooling: 'cls' }).forEach((v, i) => assertClose(v, normalized(ref.cls![i]), 1e-4, `cls from ids ${i}`));
  });

  for (const mode of ['cls', 'max'] as const) {
    test(`a Pooling module of ${mode} tokens`, async () => {
      const dir = variant('st-mini', (d) => editJson(join(d, '1_Pooling', 'config.json'), (j) => {
        j.pooling_mode_mean_tokens = false;
        j[mode === 'cls' ? 'pooling_mode_cls_token' : 'pooling_mode_max_tokens'] = true;
      }));
      const emb = await loadEmbedder(dir, { device: 'cpu' });
      emb.embed(texts).forEach((v, i) => assertClose(v, normalized(ref[mode]![i]), 1e-4, `${mode} ${i}`));
      emb.embed(texts, { normalize: false }).forEach((v, i) => assertClose(v, ref[mode]![i], 1e-4, `${mode} unnormalized ${i}`));
    });
  }

  test('without a Normalize module, vectors are not normalized; max pooling is there for any encoder', async () => {
    const dir = variant('st-mini', (d) => editJson(join(d, 'modules.json'), (j) => j.pop()));
    const emb = await loadEmbedder(dir, { device: 'cpu' });
    emb.embed(texts).forEach((v, i) => assertClose(v, ref.mean[i], 1e-4, `mean ${i}`));
    emb.embed(texts, { pooling: 'max' }).forEach((v, i) => assertClose(v, ref.max![i], 1e-4, `max ${i}`));
  });

  test('sentence_bert_config.json max_seq_length bounds the texts', async () => {
    const dir = variant('st-mini', (d) => writeFileSync(join(d, 'sentence_bert_config.json'), JSON.stringify({ max_seq_length: 5 })));
    const emb = await loadEmbedder(dir, { device: 'cpu' });
    assert.throws(() => emb.embed([texts[0]]), /input 0 has \d+ tokens, beyond the model's 5 tokens \(max_seq_length in sentence_bert_config.json\)/);
    const [cut] = emb.embed([texts[0]], { truncate: 'right' });
    const [same] = emb.embedIds([[...ref.inputs[0].ids.slice(0, 4), ref.inputs[0].ids.at(-1)!]]);
    assertClose(cut, same, 1e-6, 'cut to 5 tokens');
  });

  test('modules and pooling modes Peregrine does not run are refused by name', async () => {
    const cases: [(d: string) => void, RegExp][] = [
      [(d) => editJson(join(d, 'modules.json'), (j) => j.push({ idx: 3, name: '3', path: '3_Dense', type: 'sentence_transformers.models.Dense' })),
        /module 3 is sentence_transformers\.models\.Dense, which Peregrine does not run/],
      [(d) => editJson(join(d, '1_Pooling', 'config.json'), (j) => { j.pooling_mode_mean_sqrt_len_tokens = true; }), /pooling_mode_mean_sqrt_len_tokens is not supported/],
      [(d) => editJson(join(d, '1_Pooling', 'config.json'), (j) => { j.pooling_mode_max_tokens = true; }), /pooling_mode_mean_tokens and pooling_mode_max_tokens are all on/],
      [(d) => editJson(join(d, 'modules.json'), (j) => { j[0].path = '0_BERT'; }), /keeps the transformer in "0_BERT"/],
      [(d) => writeFileSync(join(d, 'modules.json'), '{"not": "a list"}'), /must hold a list of modules/],
      [(d) => editJson(join(d, 'modules.json'), (j) => { j[1].path = '/etc'; }), /module 1 must have a "type" and a relative "path" inside the directory \(no "\.\.", not absolute\)/],
    ];
    for (const [edit, pattern] of cases) {
      await assert.rejects(loadEmbedder(variant('st-mini', edit), { device: 'cpu' }), (e: Error) => {
        assert.match(e.message, pattern);
        assert.ok(!e.message.includes('\n'));
        return true;
      });
    }
  });
});

describe('checkpoints without tokenizer files', () => {
  const noTokenizer = (name: string) => variant(name, (d) => {
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) rmSync(join(d, f));
  });

  test('load and run on token ids; text calls say what to do', async () => {
    const ner = reference<FamilyRef>('bert-ner');
    const emb = await loadEmbedder(noTokenizer('bert-ner'), { device: 'cpu' });
    const labels = emb.classifyTokenIds(ner.inputs.map((x) => x.ids));
    assert.deepEqual(labels[0].map((t) => t.label), ner.token_logits![0].map((row) => emb.model.labels[argmax(row)]));
    assert.throws(() => emb.classifyTokens(['a']), /has no tokenizer\.json, so it takes token ids only; pass ids \(embedIds, classifyIds, classifyTokenIds, fillMaskIds\)/);
    const mlm = await loadEmbedder(noTokenizer('bert-mlm'), { device: 'cpu' });
    const ref = reference<FamilyRef>('bert-mlm');
    assert.throws(() => mlm.fillMaskIds([ref.inputs[1].ids]), /no tokenizer to name its mask token; pass maskTokenId/);
    const [fills] = mlm.fillMaskIds([ref.inputs[1].ids], { maskTokenId: 4 });
    assert.deepEqual(fills[0].predictions.map((p) => p.id), ref.fill_mask!.find((f) => f.input === 1)!.ids);
    assert.deepEqual(mlm.embedIds([[2, 3]]).length, 1);
  });
});

describe('heads and inputs that do not fit', () => {
  test('a head the checkpoint lacks, an input without a mask, a bad top-k', async () => {
    const mlm = await loadEmbedder(fixture('bert-mlm'), { device: 'cpu' });
    assert.throws(() => mlm.classify(['x']), /BertForMaskedLM has no sequence classification head; use a \.\.\.ForSequenceClassification checkpoint/);
    assert.throws(() => mlm.classifyTokenIds([[2, 3]]), /has no token classification head/);
    assert.throws(() => mlm.fillMask(['no mask here']), /input 0 has no mask token; put the mask token \[MASK\] where a token should be predicted/);
    assert.throws(() => mlm.fillMask(['[MASK]'], { topK: 0 }), /top-k must be a whole number >= 1/);
    // 48 positions: truncating a long text can cut its mask away, which is said as such
    const long = `[MASK] ${'the cat sat on the mat . '.repeat(20)}`;
    assert.throws(() => mlm.fillMask([long], { truncate: 'left' }),
      /input 0 is longer than the model's positions, and truncating it \(--truncate left, which keeps the end\) cut away its mask token \[MASK\]; shorten the text around the mask, or truncate from the other side/);
    assert.equal(mlm.fillMask([long], { truncate: 'right' })[0][0].index, 1);
    assert.throws(() => mlm.fillMaskIds([[2, 3]], { maskTokenId: 10_000 }), /maskTokenId must be a token id from 0 to 299/);
    const cls = await loadEmbedder(fixture('roberta-cls'), { device: 'cpu' });
    assert.throws(() => cls.fillMask(['<mask>']), /RobertaForSequenceClassification has no masked lm head; use a \.\.\.ForMaskedLM checkpoint/);
    assert.throws(() => cls.embed(['x'], { pooling: 'sum' as never }), /pooling must be cls, mean, max, got "sum"/);
  });

  test('RoBERTa positions start after padding_idx: the model has max_position_embeddings - pad_token_id - 1 of them', async () => {
    const emb = await loadEmbedder(fixture('roberta-mlm'), { device: 'cpu' });
    assert.equal(emb.model.info.maxPositions, 50 - 2);
    assert.throws(() => emb.embedIds([Array.from({ length: 49 }, () => 5)]), /input 0 has 49 tokens; give 1 to 48/);
  });
});

describe('bad configs are refused in one line, naming the field', () => {
  const cases: [string, (c: any) => void, string, RegExp][] = [
    ['distilbert-mlm', (c) => { c.sinusoidal_pos_embds = true; }, 'unsupported-config', /DistilBERT config: sinusoidal_pos_embds true is not supported \(only learned position embeddings\)/],
    ['distilbert-mlm', (c) => { c.dim = 30; }, 'bad-config', /DistilBERT config: dim \(30\) is not divisible by the number of heads \(4\)/],
    ['distilbert-mlm', (c) => { c.activation = 'swiglu'; }, 'unsupported-config', /DistilBERT config: activation "swiglu" is not supported/],
    ['roberta-mlm', (c) => { c.pad_token_id = 60; }, 'bad-config', /RoBERTa config: pad_token_id \(60\) leaves no positions of max_position_embeddings \(50\)/],
    ['roberta-mlm', (c) => { c.position_embedding_type = 'relative_key'; }, 'unsupported-config', /RoBERTa config: position_embedding_type "relative_key" is not supported/],
    ['xlmr', (c) => { c.hidden_size = 'big'; }, 'bad-config', /XLM-RoBERTa config: field "hidden_size" must be a positive integer, got "big"/],
    ['bert-ner', (c) => { c.id2label = { 0: 1 }; }, 'bad-config', /BERT config: field "id2label" must map label ids to label names/],
    ['bert-ner', (c) => { c.num_labels = 7; delete c.id2label; }, 'weights-mismatch', /tensor classifier.weight has shape \[5, 32\] but config.json .*num_labels=7.* implies \[7, 32\]/],
    ['bert-pretraining', (c) => { c.tie_word_embeddings = true; c.vocab_size = 200; }, 'weights-mismatch', /bert.embeddings.word_embeddings.weight has shape \[300, 32\]/],
  ];
  for (const [name, change, code, pattern] of cases) {
    test(`${name}: ${pattern.source.slice(0, 60)}`, async () => {
      const dir = variant(name, (d) => editJson(join(d, 'config.json'), change));
      await assert.rejects(loadModel(dir, { device: 'cpu' }), (e: Error & { code?: string }) => {
        assert.equal(e.code, code, e.message);
        assert.match(e.message, pattern);
        assert.ok(!e.message.includes('\n'));
        return true;
      });
    });
  }
});
