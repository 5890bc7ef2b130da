// Fuzzing model directories: the sharded index (hostile shard names, wrong types, tensors in the wrong
// shard) and config.json / generation_config.json / the weights' headers of whole checkpoints loaded,
// inspected and run. Every input is refused with a PeregrineError or loads and runs; nothing outside the
// model directory is touched, and every tensor read is the one the index names.
import { AssertionError } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { inspectModel, loadModel } from '../../src/engine/load.js';
import { openWeights } from '../../src/loaders/model-dir.js';
import { SafetensorsFile } from '../../src/loaders/safetensors.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { assertInside, fsTouched, inCaseDir, noFdLeak, noteOutcome, outcome, writeFiles, type Target } from './harness.js';
import { applyByteEdits, byteEdits, editJsonText, hostileValue, jsonEdits, oneIn, stringify, type ByteEdit, type Hostile, type JsonEdit } from './mutate.js';
import { bertModel, gpt2Model, jsonOf, type ModelSeed } from './seeds.js';

function fail(message: string): never {
  throw new AssertionError({ message });
}

/** A JSON file's new text: structural edits, then (sometimes) byte edits of the text. */
interface JsonFileEdit {
  edits: JsonEdit[];
  bytes: ByteEdit[] | null;
}

function jsonFileEdit(keys: string[], values: fc.Arbitrary<Hostile>): fc.Arbitrary<JsonFileEdit> {
  return fc.record({ edits: jsonEdits(keys, values), bytes: oneIn(6, byteEdits) });
}

function editJson(src: Buffer, e: JsonFileEdit, substitute?: (text: string) => string): Buffer {
  const text = editJsonText(src, e.edits, substitute);
  return e.bytes ? Buffer.from(applyByteEdits(text, e.bytes)) : text;
}

// ---------------------------------------------------------------------------------------- the index

const CANARY = '@@canary-absolute@@';

/** Shard names a hostile or broken index may hold. */
const shardName: fc.Arbitrary<Hostile> = fc.constantFrom<Hostile>(
  'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', '../canary.safetensors', '..', '.', '', './model-00002-of-00002.safetensors',
  '/etc/passwd', '/dev/zero', '/proc/self/fd/0', CANARY, 'sub/shard.safetensors', 'sub\\shard.safetensors', 'sub', 'dir.safetensors',
  'config.json', 'model.safetensors.index.json', 'missing.safetensors', 'fifo.safetensors', '~', '~/x', 'C:\\x', '%2e%2e', '..\\canary.safetensors', 'sub/..',
  `${'x'.repeat(251)}.safetensors`, 'x'.repeat(300), 'x'.repeat(5000), 'a\u0000b', 'model-00002-of-00002.safetensors\u0000', '\u0000',
  ' model-00002-of-00002.safetensors', 'model-00002-of-00002.safetensors ', 'MODEL-00002-OF-00002.SAFETENSORS', 'model-00002-of-00002.safetensors/',
  'a\nb', 'a\rb',
);

export interface IndexInput {
  file: JsonFileEdit;
  /** every entry of weight_map set to this name */
  all: Hostile | null;
}

export const indexInput: fc.Arbitrary<IndexInput> = fc.record({
  file: jsonFileEdit(['weight_map', 'metadata', 'transformer.wte.weight', 'transformer.h.0.ln_1.weight'], fc.oneof({ arbitrary: shardName, weight: 5 }, { arbitrary: hostileValue, weight: 2 })),
  all: oneIn(4, shardName),
});

let fifoPath: string | null = null;
/** One FIFO per process, linked into each case's model directory: opening it would block until a writer comes. */
function fifo(): string {
  if (!fifoPath) {
    const d = mkdtempSync(join(tmpdir(), 'peregrine-fuzz-fifo-'));
    fifoPath = join(d, 'fifo');
    execFileSync('mkfifo', [fifoPath]);
    process.on('exit', () => rmSync(d, { recursive: true, force: true }));
  }
  return fifoPath;
}

/** Each tensor's bytes, as the fixture's shards hold them. */
let truth: Map<string, Buffer> | null = null;
function trueBytes(): Map<string, Buffer> {
  if (truth) return truth;
  truth = new Map();
  for (const s of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
    const f = SafetensorsFile.open(join(FIXTURES, 'gpt2-tiny', s));
    for (const name of f.tensors.keys()) truth.set(name, Buffer.from(f.readBytes(name)));
    f.close();
  }
  return truth;
}

async function checkIndex(input: IndexInput, caseDir: string): Promise<void> {
  const seed = gpt2Model();
  const dir = join(caseDir, 'model');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  mkdirSync(join(dir, 'dir.safetensors'));
  symlinkSync(fifo(), join(dir, 'fifo.safetensors'));
  const shard2 = seed.files.get('model-00002-of-00002.safetensors')!;
  writeFiles(caseDir, new Map([['canary.safetensors', shard2]]));
  writeFiles(join(dir, 'sub'), new Map([['shard.safetensors', shard2]]));
  const files = new Map(seed.files);
  let doc = seed.files.get('model.safetensors.index.json')!;
  if (input.all !== null) {
    const j = jsonOf(doc) as { weight_map: Record<string, Hostile> };
    for (const k of Object.keys(j.weight_map)) j.weight_map[k] = input.all;
    doc = Buffer.from(stringify(j as Hostile));
  }
  const canary = join(caseDir, 'canary.safetensors');
  files.set('model.safetensors.index.json', editJson(doc, input.file, (t) => t.replaceAll(JSON.stringify(CANARY), JSON.stringify(canary))));
  writeFiles(dir, files);

  const map = (() => {
    try {
      return (JSON.parse(files.get('model.safetensors.index.json')!.toString('utf8')) as { weight_map: Record<string, unknown> }).weight_map;
    } catch {
      return null;
    }
  })();
  const want = trueBytes();
  const { paths } = await noFdLeak(() => fsTouched(async () => {
    const r = await outcome(() => openWeights(dir));
    noteOutcome('open', r);
    if (!r.ok) return;
    const store = r.value;
    try {
      const names = store.names().sort();
      if (!map || names.join('\n') !== Object.keys(map).sort().join('\n')) fail(`the store holds ${names.length} tensors, the index names ${Object.keys(map ?? {}).length}`);
      for (const name of names) {
        const bytes = want.get(name);
        if (!bytes) fail(`tensor ${JSON.stringify(name)} loaded, but no shard of the checkpoint has it`);
        if (!Buffer.from(store.readBytes(name)).equals(bytes)) fail(`tensor ${JSON.stringify(name)}: bytes differ from the shard's`);
      }
    } finally {
      store.close();
    }
  }));
  assertInside(paths, [dir]);
}

export const indexTarget: Target<IndexInput> = {
  name: 'index',
  quick: 40,
  arbitrary: indexInput,
  check: (input) => inCaseDir((dir) => checkIndex(input, dir)),
};

// --------------------------------------------------------------------------------- whole checkpoints

const GPT2_KEYS = ['n_embd', 'hidden_size', 'n_head', 'num_attention_heads', 'n_layer', 'num_hidden_layers', 'n_inner', 'n_positions', 'max_position_embeddings',
  'vocab_size', 'activation_function', 'layer_norm_epsilon', 'eos_token_id', 'bos_token_id', 'scale_attn_by_inverse_layer_idx', 'scale_attn_weights',
  'reorder_and_upcast_attn', 'architectures', 'model_type', 'tie_word_embeddings', 'n_ctx', 'pad_token_id', 'torch_dtype', 'dtype'];
const BERT_KEYS = ['hidden_size', 'num_attention_heads', 'num_hidden_layers', 'intermediate_size', 'max_position_embeddings', 'vocab_size', 'type_vocab_size',
  'hidden_act', 'layer_norm_eps', 'position_embedding_type', 'num_labels', 'id2label', 'label2id', 'problem_type', 'architectures', 'model_type',
  'pad_token_id', 'classifier_dropout', 'is_decoder', 'tie_word_embeddings'];
const GENERATION_KEYS = ['eos_token_id', 'bos_token_id', 'pad_token_id', 'max_length', 'max_new_tokens', 'do_sample', 'temperature', 'top_k', 'top_p'];
const HEADER_KEYS = ['dtype', 'shape', 'data_offsets', '__metadata__'];

/** Values that keep a config plausible (so that some edits load and change what runs) besides hostile ones. */
const plausible: fc.Arbitrary<Hostile> = fc.constantFrom<Hostile>(
  0, 1, 2, 3, 4, 6, 8, 16, 32, 63, 64, 65, 128, 30522, 50256, 50257, 50258, 1e-5, 1e-12, 0.1, true, false,
  'gelu_new', 'gelu', 'gelu_pytorch_tanh', 'gelu_fast', 'quick_gelu', 'relu', 'silu', 'tanh', 'GPT2LMHeadModel', 'GPT2Model', 'BertModel',
  'BertForSequenceClassification', 'BertForMaskedLM', 'LlamaForCausalLM', 'gpt2', 'bert', 'llama', 'float16', 'bfloat16', 'float32',
  'single_label_classification', 'multi_label_classification', 'regression', 'absolute', 'relative_key',
  [50256], [50256, 0], [], ['GPT2LMHeadModel'], ['BertModel'], ['BertForSequenceClassification', 'GPT2LMHeadModel'],
  { 0: 'a', 1: 'b' }, { 0: 'only' }, { 1: 'x', 2: 'y' }, { 0: 'a', 1: 'b', 2: 'c', 3: 'd' },
);
const configValue = fc.oneof({ arbitrary: plausible, weight: 3 }, { arbitrary: hostileValue, weight: 2 });

type Part = { file: 'config.json' | 'generation_config.json'; edit: JsonFileEdit } | { file: 'weights'; which: number; edits: JsonEdit[] };

export interface CheckpointInput {
  parts: Part[];
}

function checkpointInput(keys: string[], generation: boolean): fc.Arbitrary<CheckpointInput> {
  const parts: fc.Arbitrary<Part>[] = [
    fc.record({ file: fc.constant('config.json' as const), edit: jsonFileEdit(keys, configValue) }),
    fc.record({ file: fc.constant('config.json' as const), edit: jsonFileEdit(keys, configValue) }),
    fc.record({ file: fc.constant('weights' as const), which: fc.nat(), edits: jsonEdits(HEADER_KEYS, fc.oneof(plausible, hostileValue, fc.constantFrom<Hostile>('F32', 'F16', 'BF16', 'I64', 'I8', 'F8_E4M3', 'BOOL'))) }),
  ];
  if (generation) parts.push(fc.record({ file: fc.constant('generation_config.json' as const), edit: jsonFileEdit(GENERATION_KEYS, configValue) }));
  return fc.record({ parts: fc.array(fc.oneof(...parts), { minLength: 1, maxLength: 2 }) });
}

/** The weights file with an edited header (the length field rewritten to match, the data untouched). */
function editHeader(src: Buffer, edits: JsonEdit[]): Buffer {
  const n = Number(src.readBigUInt64LE(0));
  const text = editJsonText(src.subarray(8, 8 + n), edits);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, src.subarray(8 + n)]);
}

async function checkCheckpoint(seed: ModelSeed, input: CheckpointInput, dir: string): Promise<void> {
  const files = new Map(seed.files);
  const weights = [...files.keys()].filter((f) => f.endsWith('.safetensors'));
  for (const p of input.parts) {
    if (p.file === 'weights') {
      const name = weights[p.which % weights.length];
      files.set(name, editHeader(files.get(name)!, p.edits));
    } else {
      files.set(p.file, editJson(files.get(p.file)!, p.edit));
    }
  }
  writeFiles(dir, files);
  const { paths } = await noFdLeak(() => fsTouched(async () => {
    noteOutcome('inspect', await outcome(() => inspectModel(dir, { device: 'cpu', maxBatch: 2 })));
    const loaded = await outcome(() => loadModel(dir, { device: 'cpu', maxBatch: 2 }));
    noteOutcome('load', loaded);
    if (!loaded.ok) return;
    const m = loaded.value;
    if (m.kind === 'causal-lm') {
      const gen = m.generator;
      const r = await outcome(() => gen.generate('Hello world', { maxNewTokens: 2 }));
      noteOutcome('generate', r);
      if (r.ok) {
        const vocab = gen.model.info.vocabSize;
        if (!r.value.ids.every((id) => Number.isInteger(id) && id >= 0 && id < vocab)) fail(`generated ids out of the vocabulary: ${r.value.ids}`);
        if (typeof r.value.text !== 'string') fail('generated text is not a string');
      }
      gen.dispose();
    } else {
      const emb = m.embedder;
      const e = await outcome(() => emb.embed(['Hello world', 'a']));
      noteOutcome('embed', e);
      if (e.ok && !e.value.every((v) => v.length === emb.model.info.hidden)) fail('an embedding has the wrong length');
      if (emb.model.labels.length > 0) {
        const c = await outcome(() => emb.classify(['Hello world']));
        noteOutcome('classify', c);
        if (c.ok && c.value.length !== 1) fail('classify gave the wrong number of results');
        if (c.ok && typeof c.value[0].label !== 'string') fail(`classify gave a label that is not a string: ${JSON.stringify(c.value[0].label)}`);
      }
      emb.dispose();
    }
  }));
  assertInside(paths, [dir]);
}

export const gpt2ConfigTarget: Target<CheckpointInput> = {
  name: 'config-gpt2',
  quick: 20,
  arbitrary: checkpointInput(GPT2_KEYS, true),
  check: (input) => inCaseDir((dir) => checkCheckpoint(gpt2Model(), input, dir)),
};

export const bertConfigTarget: Target<CheckpointInput> = {
  name: 'config-bert',
  quick: 20,
  arbitrary: checkpointInput(BERT_KEYS, false),
  check: (input) => inCaseDir((dir) => checkCheckpoint(bertModel(), input, dir)),
};

