// Encoder-decoder models on the CPU against Hugging Face generate() (test/fixtures/*/reference.json, made by
// tools/reference/make_seq2seq_fixtures.py): greedy and beam-search ids identical, beam scores and log-probs within
// 1e-4, every source of a fixture batched together, and a pytorch_model.bin copy giving what the safetensors give.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadGenerator, loadTranslator, PeregrineError } from '../src/index.js';
import { fixture, reference } from './helpers/fixtures.js';
import { checkAll, type Reference } from './helpers/seq2seq.js';

const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.js');

describe('encoder-decoder models against Hugging Face generate()', () => {
  for (const name of ['bart-tiny', 'mbart-tiny', 'marian-tiny', 't5-tiny', 't5v11-tiny']) {
    test(name, async () => {
      const g = await loadGenerator(fixture(name), { device: 'cpu' });
      try {
        await checkAll(g, reference<Reference>(name), 1e-4);
      } finally {
        g.dispose();
      }
    });
  }

  test('a pytorch_model.bin copy gives what the safetensors give', async () => {
    const ref = reference<Reference>('bart-tiny');
    const outs = [];
    for (const dir of ['bart-tiny', 'bart-tiny-bin']) {
      const g = await loadGenerator(fixture(dir), { device: 'cpu' });
      outs.push(await g.generateIds(ref.sources.map((s) => s.ids), { maxNewTokens: 8, numBeams: 3, numReturnSequences: 3 }));
      g.dispose();
    }
    assert.deepEqual(outs[0], outs[1]);
  });
});

describe('encoder-decoder requests', () => {
  test('text in, text out; streaming; max length relative to the source', async () => {
    const g = await loadGenerator(fixture('t5-tiny'), { device: 'cpu' });
    try {
      const res = await g.generate('translate English to German: Hello, world!', { maxNewTokens: 6 });
      assert.equal(res.ids.length, 6);
      assert.equal(typeof res.text, 'string');
      const events = [];
      for await (const e of g.stream(['Hello, world!'], { maxNewTokens: 4 })) events.push(e.id);
      assert.equal(events.length, 4);
      const ids = g.encodePrompts(['Hello, world!'])[0];
      const [short] = await g.generateIds([ids], { maxNewTokens: 30, maxLengthA: 0.5, maxLengthB: 1 });
      assert.equal(short.ids.length, Math.floor(0.5 * ids.length + 1));
    } finally {
      g.dispose();
    }
  });

  test('generation_config.json supplies the defaults (mBART forces its language code, Marian bans <pad>)', async () => {
    const g = await loadGenerator(fixture('mbart-tiny'), { device: 'cpu' });
    try {
      const [res] = await g.generateIds([[0, 50, 60, 2]], { maxNewTokens: 3 });
      assert.equal(res.ids[0], 7);
      const [other] = await g.generateIds([[0, 50, 60, 2]], { maxNewTokens: 3, forcedBosTokenId: 9 });
      assert.equal(other.ids[0], 9);
    } finally {
      g.dispose();
    }
  });

  test('bad options and sessions are refused with one line', async () => {
    const g = await loadGenerator(fixture('bart-tiny'), { device: 'cpu' });
    try {
      const isBad = (err: unknown) => err instanceof PeregrineError && !err.message.includes('\n');
      await assert.rejects(g.generateIds([[0, 5, 2]], { noRepeatNgramSize: -1 }), isBad);
      await assert.rejects(g.generateIds([[0, 5, 2]], { forcedEosTokenId: 10 ** 6 }), isBad);
      await assert.rejects(g.generateIds([Array(100).fill(5)], { maxNewTokens: 4 }), isBad);
      assert.throws(() => g.session(), isBad);
    } finally {
      g.dispose();
    }
    const gpt = await loadGenerator(fixture('gpt2-wide'), { device: 'cpu' });
    try {
      await assert.rejects(gpt.generateIds([[1, 2]], { decoderStartTokenId: 0 }), (e: unknown) => e instanceof PeregrineError);
    } finally {
      gpt.dispose();
    }
  });
});

describe('translate and summarize', () => {
  const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, PEREGRINE_DEVICE: 'cpu' } });

  test('peregrine translate prints one JSON line per input with the library\'s tokens', async () => {
    const r = cli(['translate', '-m', fixture('marian-tiny'), '--json', '-n', '5', 'Hello, world!', 'The quick brown fox.']);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).sort((a, b) => a.index - b.index);
    const tr = await loadTranslator(fixture('marian-tiny'), { device: 'cpu' });
    try {
      const want = await tr.results(['Hello, world!', 'The quick brown fox.'], { maxNewTokens: 5 });
      assert.deepEqual(lines.map((l) => l.ids), want.map((w) => w.ids));
      assert.deepEqual(await tr.translate(['Hello, world!'], { maxNewTokens: 5 }), [want[0].text]);
    } finally {
      tr.dispose();
    }
  });

  test('summarize refuses a decoder-only model with one line', () => {
    const r = cli(['summarize', '-m', fixture('gpt2-wide'), 'some text']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /decoder-only model/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});
