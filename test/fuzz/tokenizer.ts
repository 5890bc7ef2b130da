// Fuzzing the tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json) through
// Peregrine's tokenizer layer: a directory is refused with a PeregrineError or gives a tokenizer whose
// encode, decode, special tokens and chat template answer with ids, strings or PeregrineErrors, never
// another exception; every id it produces is a non-negative integer.
import { AssertionError } from 'node:assert';
import fc from 'fast-check';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '../../src/tokenizers/tokenizer.js';
import { assertInside, fsTouched, inCaseDir, noFdLeak, note, noteOutcome, outcome, syncOutcome, writeFiles, type Target } from './harness.js';
import { applyByteEdits, byteEdits, editJsonText, hostileString, hostileValue, jsonEdits, oneIn, type ByteEdit, type Hostile, type JsonEdit } from './mutate.js';
import { bertTokenizer, gpt2Tokenizer, tokenizerFiles, type TokenizerSeed } from './seeds.js';

function fail(message: string): never {
  throw new AssertionError({ message });
}

const TOKENIZER_KEYS = ['type', 'vocab', 'merges', 'unk_token', 'continuing_subword_prefix', 'end_of_word_suffix', 'byte_fallback', 'ignore_merges', 'fuse_unk',
  'dropout', 'max_input_chars_per_word', 'add_prefix_space', 'trim_offsets', 'use_regex', 'pattern', 'Regex', 'String', 'behavior', 'invert', 'normalizer',
  'normalizers', 'pre_tokenizer', 'pretokenizers', 'post_processor', 'processors', 'decoder', 'decoders', 'added_tokens', 'model', 'id', 'content', 'special',
  'single_word', 'lstrip', 'rstrip', 'normalized', 'single', 'pair', 'special_tokens', 'SpecialToken', 'Sequence', 'type_id', 'ids', 'tokens', 'prefix',
  'cleanup', 'lowercase', 'strip_accents', 'clean_text', 'handle_chinese_chars', 'replacement', 'prepend_scheme', 'split', 'content', 'start', 'stop', 'sep', 'cls',
  'truncation', 'padding', 'max_length', 'strategy', 'direction', 'pad_id', 'pad_token'];
const CONFIG_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'cls_token', 'sep_token', 'mask_token', 'chat_template', 'added_tokens_decoder',
  'model_max_length', 'add_bos_token', 'add_eos_token', 'add_prefix_space', 'do_lower_case', 'clean_up_tokenization_spaces', 'tokenizer_class', 'legacy',
  'content', 'special', 'name', 'template', 'additional_special_tokens', 'padding_side', 'truncation_side', 'model_input_names'];

/** Values a tokenizer file plausibly holds, besides the hostile ones. */
const tokenizerValue: fc.Arbitrary<Hostile> = fc.oneof(
  { arbitrary: hostileValue, weight: 3 },
  {
    arbitrary: fc.constantFrom<Hostile>('BPE', 'WordPiece', 'Unigram', 'WordLevel', 'ByteLevel', 'Sequence', 'Split', 'Replace', 'Strip', 'Metaspace', 'BertNormalizer',
      'BertPreTokenizer', 'NFC', 'NFKC', 'NFD', 'Lowercase', 'Prepend', 'TemplateProcessing', 'RobertaProcessing', 'BertProcessing', 'ByteFallback', 'Fuse', 'WhitespaceSplit',
      'Whitespace', 'Punctuation', 'Digits', 'Isolated', 'Removed', 'MergedWithPrevious', 'first', 'always', 'never', '[CLS]', '[SEP]', '[UNK]', '<|endoftext|>', '##', 'Ġ',
      { Regex: '\\s+' }, { String: ' ' }, { Regex: '(' }, { id: 'A', type_id: 0 }, { SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } },
      { id: 0, content: '<s>', special: true }, { type: 'BPE', vocab: {}, merges: [] }, { type: 'WordPiece', vocab: {}, unk_token: '[UNK]' }, { a: 0, b: 1 }, ['a b'], [['a', 'b']],
      { name: 'default', template: '{{ messages[0].content }}' }, [{ name: 'default', template: 5 }], [null], [{ name: 'tool_use' }], '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}',
      '{% if %}', '{{ raise_exception("no") }}', { content: '<|endoftext|>', special: true }, { content: 5 }),
    weight: 2,
  },
);

export interface TokenizerInput {
  which: 0 | 1;
  edits: { file: 'tokenizer.json' | 'tokenizer_config.json' | 'special_tokens_map.json'; json: JsonEdit[]; bytes: ByteEdit[] | null }[];
  texts: string[];
  ids: number[];
}

const FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

export const tokenizerInput: fc.Arbitrary<TokenizerInput> = fc.record({
  which: fc.constantFrom(0 as const, 1 as const),
  edits: fc.array(fc.record({
    file: fc.oneof({ arbitrary: fc.constant(FILES[0]), weight: 3 }, { arbitrary: fc.constant(FILES[1]), weight: 2 }, { arbitrary: fc.constant(FILES[2]), weight: 1 }),
    json: jsonEdits([...TOKENIZER_KEYS, ...CONFIG_KEYS], tokenizerValue),
    bytes: oneIn(8, byteEdits),
  }), { minLength: 1, maxLength: 3 }),
  texts: fc.array(fc.oneof(hostileString.filter((s): s is string => typeof s === 'string'), fc.string({ unit: 'grapheme', maxLength: 20 })), { maxLength: 3 }),
  ids: fc.array(fc.oneof(fc.nat({ max: 700 }), fc.constantFrom(0, 100, 101, 102, 599, 600, 1199, 30521, 50256, 2 ** 31 - 1)), { maxLength: 6 }),
});

const TEXTS = ['Hello, world! The quick brown fox.', '', '  ', '<|endoftext|>', '[CLS] x [SEP] [MASK]', 'ünïcödé 日本語 😀 \u0000 \r\n\t'];
const SPECIALS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'cls_token', 'sep_token', 'mask_token'];

function isId(x: unknown): boolean {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function files(seed: TokenizerSeed, input: TokenizerInput): Map<string, Buffer> {
  const out = tokenizerFiles(seed);
  for (const e of input.edits) {
    const text = editJsonText(out.get(e.file)!, e.json);
    out.set(e.file, e.bytes ? Buffer.from(applyByteEdits(text, e.bytes)) : text);
  }
  return out;
}

async function checkTokenizer(input: TokenizerInput, dir: string): Promise<void> {
  writeFiles(dir, files(input.which === 0 ? gpt2Tokenizer() : bertTokenizer(), input));
  const { paths } = await noFdLeak(() => fsTouched(async () => {
    const r = await outcome(() => Tokenizer.fromDir(dir));
    noteOutcome('load', r);
    if (!r.ok) return;
    const tok = r.value;
    for (const text of [...TEXTS, ...input.texts]) {
      const e = syncOutcome(() => tok.encode(text));
      noteOutcome('encode', e);
      if (!e.ok) continue;
      if (!Array.isArray(e.value) || !e.value.every(isId)) fail(`encode(${JSON.stringify(text)}) gave ids that are not token ids: ${JSON.stringify(e.value).slice(0, 200)}`);
      const d = syncOutcome(() => tok.decode(e.value));
      noteOutcome('decode', d);
      if (d.ok && typeof d.value !== 'string') fail('decode gave something other than a string');
      const noSpecials = syncOutcome(() => tok.encode(text, false));
      if (noSpecials.ok && !noSpecials.value.every(isId)) fail('encode without special tokens gave ids that are not token ids');
    }
    for (const skip of [true, false]) {
      const d = syncOutcome(() => tok.decode(input.ids, skip));
      if (d.ok && typeof d.value !== 'string') fail('decode gave something other than a string');
    }
    for (const key of SPECIALS) {
      const t = syncOutcome(() => tok.specialToken(key));
      if (t.ok && t.value !== undefined && typeof t.value !== 'string') fail(`specialToken(${key}) gave ${JSON.stringify(t.value)}`);
      const id = syncOutcome(() => tok.specialId(key));
      if (id.ok && id.value !== undefined && !isId(id.value)) fail(`specialId(${key}) gave ${JSON.stringify(id.value)}`);
    }
    const t = syncOutcome(() => tok.chatTemplate());
    noteOutcome('chatTemplate', t);
    if (t.ok && t.value !== null) {
      if (typeof t.value !== 'string') fail(`chatTemplate() gave ${JSON.stringify(t.value)}`);
      // the chat turns a template that does not parse into a PeregrineError (engine/chat.ts)
      try {
        new Template(t.value);
      } catch {
        note('template: does not parse');
      }
    }
  }));
  assertInside(paths, [dir]);
}

export const tokenizerTarget: Target<TokenizerInput> = {
  name: 'tokenizer',
  quick: 60,
  arbitrary: tokenizerInput,
  check: (input) => inCaseDir((dir) => checkTokenizer(input, dir)),
};
