// Loading model directories, and the one-line errors for everything a directory can get wrong.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { inspectModel, loadEmbedder, loadGenerator, loadModel, PeregrineError, type ErrorCode } from '../src/index.js';
import { encodeSafetensors } from '../src/loaders/safetensors-write.js';
import { SafetensorsFile } from '../src/loaders/safetensors.js';
import { overlaps } from '../src/ops/plan.js';
import { CpuBackend } from '../src/backends/cpu/backend.js';
import { checkFits } from '../src/engine/fit.js';
import { writeRandomBert, writeRandomGpt2 } from './helpers/random-model.js';
import { fixture, FIXTURES, hasGpuDriver } from './helpers/fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-load-'));
after(() => rmSync(root, { recursive: true, force: true }));
const gptTok = join(FIXTURES, 'tokenizers', 'gpt2');
const small = { vocab: 50257, hidden: 16, layers: 2, heads: 2, positions: 32 };
const base = join(root, 'base');
writeRandomGpt2(base, small, gptTok);
let n = 0;

/** A copy of the good checkpoint, changed by `edit`. */
function variant(edit: (dir: string) => void): string {
  const dir = join(root, `v${n++}`);
  cpSync(base, dir, { recursive: true });
  edit(dir);
  return dir;
}

function editConfig(dir: string, change: (c: Record<string, unknown>) => void): void {
  const p = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(p, 'utf8'));
  change(c);
  writeFileSync(p, JSON.stringify(c));
}

async function fails(promise: Promise<unknown>, code: ErrorCode, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PeregrineError, `expected a PeregrineError, got ${(err as Error)?.stack ?? err}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'), 'the message is one line');
    return true;
  });
}

describe('good checkpoints', () => {
  test('a random GPT-2 loads and generates; inspect describes it', async () => {
    const gen = await loadGenerator(base, { device: 'cpu' });
    const r = await gen.generate('Hello', { maxNewTokens: 3 });
    assert.equal(r.ids.length, 3);
    const info = await inspectModel(base);
    assert.equal(info.info.architecture, 'GPT2LMHeadModel');
    assert.equal(info.info.layers, 2);
    // every stored value is a parameter (the head is tied to wte, so it is counted once)
    assert.equal(info.info.parameters, info.dtypes.reduce((a, d) => a + d.params, 0));
    assert.deepEqual(info.dtypes.map((d) => d.dtype), ['F32']);
    assert.deepEqual(info.memory.regions.map((r) => r.name), ['weights', 'kv-cache', 'logits', 'tables', 'activations']);
  });

  test('the sharded fp16 fixture reports its dtype and loads through the index', async () => {
    const info = await inspectModel(fixture('gpt2-tiny'));
    assert.deepEqual(info.dtypes.map((d) => d.dtype), ['F16']);
    assert.equal(info.info.parameters, info.dtypes[0].params);
  });

  test('the activation arena shares bytes between buffers whose lifetimes do not overlap', async () => {
    const { memory } = await inspectModel(base, { maxBatch: 4, maxSeqLen: 32 });
    const total = memory.buffers.reduce((a, b) => a + b.bytes, 0);
    const arena = memory.regions.find((r) => r.name === 'activations')!.bytes;
    assert.ok(arena < total, `arena ${arena} should be smaller than the sum of its buffers ${total}`);
    for (const a of memory.buffers) {
      for (const b of memory.buffers) {
        if (a === b || !overlaps(a.ranges, b.ranges)) continue;
        const disjoint = a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset;
        assert.ok(disjoint, `${a.name} and ${b.name} are alive together but overlap`);
      }
    }
  });

  test('BERT with the "bert." prefix and a classifier, and without', async () => {
    const dir = join(root, 'bert');
    writeRandomBert(dir, { hidden: 16, heads: 2, layers: 1, positions: 32, labels: 2 }, join(FIXTURES, 'tokenizers', 'bert-base-uncased'));
    const emb = await loadEmbedder(dir);
    assert.equal(emb.classify(['a b c'])[0].scores.length, 2);
    assert.equal(emb.embed(['x'])[0].length, 16);
  });
});

describe('bad model directories', () => {
  test('a layer count far beyond the weights is refused for the missing layer, allocating nothing per claimed layer', async () => {
    // found by npm run fuzz: n_layer 2^31 once built a per-layer array from the config before any weight was read
    const dir = variant((d) => editConfig(d, (c) => { c.n_layer = 2 ** 31; }));
    await fails(loadGenerator(dir, { device: 'cpu' }), 'weights-mismatch', /no tensor .*h\.2\./);
    await fails(inspectModel(dir, { device: 'cpu' }), 'weights-mismatch', /no tensor .*h\.2\./);
  });

  test('a directory that does not exist', () => fails(loadModel(join(root, 'nope')), 'file-missing', /not found/));
  test('a file instead of a directory', () => fails(loadModel(join(base, 'config.json')), 'file-missing', /is a file|not a directory/));
  test('no config.json', () => fails(loadModel(variant((d) => unlinkSync(join(d, 'config.json')))), 'file-missing', /config\.json not found/));
  test('config.json is not JSON', () =>
    fails(loadModel(variant((d) => writeFileSync(join(d, 'config.json'), '{"n_embd": 16,'))), 'bad-config', /not valid JSON/));
  test('no weights', () =>
    fails(loadModel(variant((d) => unlinkSync(join(d, 'model.safetensors')))), 'file-missing', /no model\.safetensors/));
  test('no tokenizer', () => fails(loadModel(variant((d) => unlinkSync(join(d, 'tokenizer.json')))), 'file-missing', /tokenizer\.json not found/));
  test('an unknown architecture', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { c.architectures = ['MambaForCausalLM']; }))), 'unknown-architecture', /MambaForCausalLM is not supported; Peregrine runs .*LlamaForCausalLM/));
  test('no architectures and an unknown model_type', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { delete c.architectures; c.model_type = 'mamba'; }))), 'unknown-architecture', /mamba/));
  test('a field of the wrong type', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { c.n_head = 'two'; }))), 'bad-config', /"n_head" must be a positive integer/));
  test('hidden size not divisible by heads', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { c.n_head = 3; }))), 'bad-config', /not divisible/));
  test('config hidden size does not match the weights', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { c.n_embd = 32; c.n_head = 4; }))), 'weights-mismatch', /has shape \[.*\] but config\.json .* implies/));
  test('config has more layers than the weights', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { c.n_layer = 3; }))), 'weights-mismatch', /h\.2\./));
  test('config vocabulary does not match', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { c.vocab_size = 50000; }))), 'weights-mismatch', /wte\.weight/));
  test('weights of another architecture', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { c.architectures = ['BertModel']; c.hidden_size = 16; c.num_attention_heads = 2; c.num_hidden_layers = 2; c.intermediate_size = 64; c.max_position_embeddings = 32; }))),
      'weights-mismatch', /not a BERT checkpoint/));
  test('a value nested too deeply for JSON.stringify is named, not a stack overflow (found by fuzzing)', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    await fails(loadModel(variant((d) => {
      const text = readFileSync(join(d, 'config.json'), 'utf8').replace(/"vocab_size":\s*\d+/, `"vocab_size": ${deep}`);
      writeFileSync(join(d, 'config.json'), text);
    })), 'bad-config', /"vocab_size" must be a positive integer, got \(a value nested too deeply to show\)/);
  });
  test('a long value is cut short in the message', () =>
    fails(loadModel(variant((d) => editConfig(d, (c) => { c.n_head = 'x'.repeat(5000); }))), 'bad-config', /got "xxx+\.\.\. \(5002 characters\); fix config\.json$/));
  test('truncated weights', () =>
    fails(loadModel(variant((d) => truncateSync(join(d, 'model.safetensors'), 5000))), 'bad-safetensors', /truncated/));

  describe('sharded checkpoints', () => {
    /** Splits the checkpoint into two shards with an index. */
    function sharded(edit: (dir: string, index: { weight_map: Record<string, string> }) => void): string {
      return variant((d) => {
        const st = SafetensorsFile.open(join(d, 'model.safetensors'));
        const names = [...st.tensors.keys()];
        const parts = [names.slice(0, 5), names.slice(5)];
        const index = { metadata: {}, weight_map: {} as Record<string, string> };
        parts.forEach((part, i) => {
          const file = `model-0000${i + 1}-of-00002.safetensors`;
          writeFileSync(join(d, file), encodeSafetensors(part.map((name) => ({ ...st.info(name), data: st.readBytes(name) }))));
          for (const name of part) index.weight_map[name] = file;
        });
        st.close();
        unlinkSync(join(d, 'model.safetensors'));
        edit(d, index);
        writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(index));
      });
    }

    test('load through the index', async () => {
      const gen = await loadGenerator(sharded(() => {}));
      assert.equal((await gen.generate('Hi', { maxNewTokens: 2 })).ids.length, 2);
    });
    test('a shard is missing', () =>
      fails(loadModel(sharded((d) => unlinkSync(join(d, 'model-00002-of-00002.safetensors')))), 'file-missing', /model-00002-of-00002/));
    test('the index places a tensor in the wrong shard', () =>
      fails(loadModel(sharded((_, idx) => { idx.weight_map['wte.weight'] = 'model-00002-of-00002.safetensors'; })), 'weights-mismatch', /does not match the shards/));
    test('the index has no weight_map', () =>
      fails(loadModel(sharded((_, idx) => { (idx as { weight_map: unknown }).weight_map = []; })), 'bad-config', /weight_map/));
    test('shard names that are paths, empty or hold a NUL byte are refused before anything is opened (found by fuzzing)', async () => {
      for (const name of ['..', '.', '', 'a\u0000b', 'model-00002-of-00002.safetensors\u0000', '../model.safetensors', '/etc/passwd', 'sub\\x']) {
        await fails(loadModel(sharded((_, idx) => { idx.weight_map['wte.weight'] = name; })), 'bad-config', /invalid shard .*file names in the model directory/);
      }
    });
    test('a shard name nested too deeply to quote (found by fuzzing)', async () => {
      const dir = sharded(() => {});
      const index = join(dir, 'model.safetensors.index.json');
      writeFileSync(index, readFileSync(index, 'utf8').replace('"model-00001-of-00002.safetensors"', '['.repeat(100_000) + ']'.repeat(100_000)));
      await fails(loadModel(dir), 'bad-config', /invalid shard \(a value nested too deeply to show\)/);
    });
    test('a shard name too long for the filesystem, a directory or a FIFO named as a shard (found by fuzzing)', async () => {
      await fails(loadModel(sharded((_, idx) => { idx.weight_map['wte.weight'] = 'x'.repeat(300); })), 'file-unreadable', /ENAMETOOLONG/);
      await fails(loadModel(sharded((d, idx) => {
        mkdirSync(join(d, 'dir.safetensors'));
        idx.weight_map['wte.weight'] = 'dir.safetensors';
      })), 'file-unreadable', /is a directory/);
      // opening a FIFO would block until something writes to it
      await fails(loadModel(sharded((d, idx) => {
        execFileSync('mkfifo', [join(d, 'fifo.safetensors')]);
        idx.weight_map['wte.weight'] = 'fifo.safetensors';
      })), 'file-unreadable', /not a regular file/);
    });
  });
});

describe('BERT classifier labels (found by fuzzing)', () => {
  function bertVariant(change: (c: Record<string, unknown>) => void): string {
    const dir = join(root, `bert-v${n++}`);
    cpSync(fixture('bert-tiny'), dir, { recursive: true, dereference: true });
    editConfig(dir, change);
    return dir;
  }

  test('id2label that does not map ids to names is refused', async () => {
    for (const id2label of [{ 0: 5, 1: 'b', 2: 'c' }, { 0: null }, ['a', 'b', 'c'], 'abc']) {
      await fails(loadModel(bertVariant((c) => { c.id2label = id2label; })), 'bad-config', /"id2label" must map label ids to label names/);
    }
  });
  test('a num_labels too large to list is refused, not a RangeError or an out-of-memory crash', async () => {
    for (const count of [2 ** 40, 2 ** 31]) {
      await fails(loadModel(bertVariant((c) => { c.num_labels = count; })), 'bad-config', /"num_labels" is \d+, more labels than Peregrine loads/);
    }
  });
});

describe('bad load options and model kinds', () => {
  test('max batch must be a positive integer', () => fails(loadModel(base, { maxBatch: 0 }), 'bad-argument', /max batch/));
  test('a memory plan beyond the memory there is says how much and what to lower, before allocating', async () => {
    await fails(loadModel(base, { device: 'cpu', maxBatch: 5_000_000 }), 'out-of-memory', /memory plan needs (at least )?[\d.]+ TiB \(logits .*\) but the CPU has .* available; lower --max-batch \(5000000\) or --max-seq-len \(32\)$/);
    assert.throws(() => checkFits([{ name: 'kv-cache', bytes: 3 * 2 ** 30 }, { name: 'logits', bytes: 2 ** 20 }], 2 ** 30, 'cuda', 'lower --max-batch'),
      (err: unknown) => err instanceof PeregrineError && err.code === 'out-of-memory' && /needs 3\.0 GiB \(kv-cache 3\.0 GiB, logits 1\.0 MiB\) but the cuda device has 1\.0 GiB available; lower --max-batch$/.test(err.message));
    assert.throws(() => new CpuBackend().buffer([2 ** 26, 2 ** 27], 'f32'), (err: unknown) => err instanceof PeregrineError && err.code === 'out-of-memory' && /\[67108864, 134217728\] f32/.test(err.message));
  });
  test('max sequence length beyond the model', () => fails(loadModel(base, { maxSeqLen: 4096 }), 'bad-argument', /beyond the model's 32/));
  test('cuda without a GPU says so', { skip: hasGpuDriver() ? 'this machine has a GPU' : false }, () =>
    fails(loadModel(base, { device: 'cuda' }), 'device', /NVIDIA driver.*--device cpu/));
  test('the CPU computes in f32 whatever dtype is asked, and says so', async () => {
    const notes: string[] = [];
    const f16 = await loadGenerator(base, { device: 'cpu', dtype: 'f16', notice: (m) => notes.push(m) });
    assert.deepEqual(notes, ['the CPU computes in f32; --dtype f16 applies on the GPU']);
    assert.equal(f16.runtime.backend.activationDtype, 'f32');
    const f32 = await loadGenerator(base, { device: 'cpu', notice: (m) => notes.push(m) });
    assert.equal(notes.length, 1, 'no note without a dtype');
    assert.deepEqual((await f16.generate('Hello', { maxNewTokens: 4 })).ids, (await f32.generate('Hello', { maxNewTokens: 4 })).ids);
  });
  test('PEREGRINE_DEVICE must name a device', async () => {
    const saved = process.env.PEREGRINE_DEVICE;
    process.env.PEREGRINE_DEVICE = 'bogus';
    try {
      await fails(loadModel(base, { device: 'cpu' }), 'bad-argument', /PEREGRINE_DEVICE="bogus" is not a device; set it to cpu, cuda or auto/);
    } finally {
      process.env.PEREGRINE_DEVICE = saved;
    }
  });
  test('generate on an encoder', () => fails(loadGenerator(fixture('bert-tiny')), 'bad-request', /encoder/));
  test('embed on a causal LM', () => fails(loadEmbedder(base), 'bad-request', /causal LM/));
  test('a name that is neither a directory nor a hub id', () => fails(loadModel('bad name!'), 'bad-argument', /neither a model directory nor a hub model id/));
});
