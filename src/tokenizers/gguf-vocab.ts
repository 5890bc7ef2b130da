// A GGUF file's vocabulary (tokenizer.ggml.*) as the Hugging Face tokenizer.json it stands for, run by the same
// library as every other tokenizer (tokenizer.ts):
// - "gpt2": byte-level BPE with the file's merges and the split regex of its pre-tokenizer (tokenizer.ggml.pre);
// - "llama": SentencePiece-style BPE with byte fallback. llama.cpp merges the adjacent pair whose concatenation is
//   the highest-scoring token; as BPE merges (every split of a token into two tokens, ranked by the token's score,
//   then by the ids of the halves) the same pairs merge in the same order, ties aside.
// Control tokens (type 3) and user-defined ones (type 4) are matched in text as added tokens.
import { fail, show } from '../errors.js';
import type { Metadata } from '../loaders/gguf-model.js';
import type { GgufValue } from '../loaders/gguf.js';
import { Tokenizer } from './tokenizer.js';

const GPT2_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** tokenizer.ggml.pre -> the split regex (and NFC for Qwen2), as llama.cpp's llama-vocab.cpp pairs them */
const PRE: Record<string, { split: string; nfc?: boolean }> = {
  default: { split: GPT2_SPLIT }, 'gpt-2': { split: GPT2_SPLIT },
  'llama-bpe': { split: LLAMA3_SPLIT }, llama3: { split: LLAMA3_SPLIT },
  qwen2: { split: QWEN2_SPLIT, nfc: true },
};
const CONTROL = 3, USER_DEFINED = 4;

function strings(meta: Metadata, key: string, where: string): string[] {
  const v = meta.map.get(key);
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) fail('bad-gguf', `${where}: metadata ${key} must be a list of strings, got ${show(v)}`);
  return v as string[];
}

function numbers(meta: Metadata, key: string, n: number, where: string): number[] | null {
  const v: GgufValue | undefined = meta.map.get(key);
  if (v === undefined) return null;
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === 'number')) {
    fail('bad-gguf', `${where}: metadata ${key} must be a list of ${n} numbers (one per token), got ${show(v)}`);
  }
  return v as number[];
}

function bool(meta: Metadata, key: string, fallback: boolean, where: string): boolean {
  const v = meta.map.get(key);
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') fail('bad-gguf', `${where}: metadata ${key} must be true or false, got ${show(v)}`);
  return v;
}

function tokenId(meta: Metadata, key: string, vocab: number, where: string): number | null {
  if (!meta.has(key)) return null;
  const id = meta.int(key);
  if (id >= vocab) fail('bad-gguf', `${where}: metadata ${key} is ${id}, outside the vocabulary of ${vocab} tokens`);
  return id;
}

/** SentencePiece scores as BPE merges: every split of a token into two tokens, best-scoring token first. */
function mergesFromScores(tokens: string[], scores: number[], types: number[] | null, ids: Map<string, number>): string[] {
  const merges: [number, number, number][] = [];
  tokens.forEach((t, id) => {
    if (types && types[id] !== 1) return; // normal tokens only
    const chars = [...t];
    for (let i = 1; i < chars.length; i++) {
      const l = ids.get(chars.slice(0, i).join('')), r = ids.get(chars.slice(i).join(''));
      if (l !== undefined && r !== undefined) merges.push([id, l, r]);
    }
  });
  merges.sort((a, b) => scores[b[0]] - scores[a[0]] || a[1] - b[1] || a[2] - b[2]);
  return merges.map(([, l, r]) => `${tokens[l]} ${tokens[r]}`);
}

/** The tokenizer of a GGUF file's metadata (`where`: the file, for messages). */
export function tokenizerFromGguf(meta: Metadata, where: string): Tokenizer {
  const model = meta.string('tokenizer.ggml.model');
  const tokens = strings(meta, 'tokenizer.ggml.tokens', where);
  const types = numbers(meta, 'tokenizer.ggml.token_type', tokens.length, where);
  const vocab: Record<string, number> = {};
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (!ids.has(t)) ids.set(t, i);
    if (!Object.hasOwn(vocab, t)) vocab[t] = i;
  });
  const added = tokens.flatMap((t, id) => (types && (types[id] === CONTROL || types[id] === USER_DEFINED)
    ? [{ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[id] === CONTROL }] : []));
  const bos = tokenId(meta, 'tokenizer.ggml.bos_token_id', tokens.length, where);
  const eos = tokenId(meta, 'tokenizer.ggml.eos_token_id', tokens.length, where);
  const unk = tokenId(meta, 'tokenizer.ggml.unknown_token_id', tokens.length, where);
  const addBos = bool(meta, 'tokenizer.ggml.add_bos_token', model === 'llama', where) && bos !== null;
  const template = (special: string[]) => ({
    type: 'TemplateProcessing',
    single: [...special.map((id) => ({ SpecialToken: { id, type_id: 0 } })), { Sequence: { id: 'A', type_id: 0 } }],
    pair: [...special.map((id) => ({ SpecialToken: { id, type_id: 0 } })), { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: Object.fromEntries(special.map((id) => [id, { id, ids: [ids.get(id)!], tokens: [id] }])),
  });
  const bosSpecial = addBos ? [tokens[bos!]] : [];
  let json: Record<string, unknown>;
  if (model === 'gpt2') {
    const merges = strings(meta, 'tokenizer.ggml.merges', where);
    const preName = meta.string('tokenizer.ggml.pre', 'default');
    const pre = Object.hasOwn(PRE, preName) ? PRE[preName] : undefined;
    if (!pre) fail('unsupported-config', `${where}: tokenizer.ggml.pre ${show(preName)} is not supported (Peregrine splits text as ${Object.keys(PRE).join(', ')})`);
    json = {
      version: '1.0', added_tokens: added,
      normalizer: pre.nfc ? { type: 'NFC' } : null,
      pre_tokenizer: { type: 'Sequence', pretokenizers: [
        { type: 'Split', pattern: { Regex: pre.split }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] },
      post_processor: { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }, template(bosSpecial)] },
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false,
        byte_fallback: false, ignore_merges: false, vocab, merges },
    };
  } else if (model === 'llama') {
    const scores = numbers(meta, 'tokenizer.ggml.scores', tokens.length, where);
    if (!scores) fail('bad-gguf', `${where}: a "llama" vocabulary needs tokenizer.ggml.scores`);
    const prefix = bool(meta, 'tokenizer.ggml.add_space_prefix', true, where);
    json = {
      version: '1.0', added_tokens: added,
      normalizer: { type: 'Sequence', normalizers: [...(prefix ? [{ type: 'Prepend', prepend: '▁' }] : []), { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
      pre_tokenizer: null,
      post_processor: template(bosSpecial),
      decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
        ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : [])] },
      model: { type: 'BPE', dropout: null, unk_token: unk === null ? null : tokens[unk], continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: mergesFromScores(tokens, scores, types, ids) },
    };
  } else {
    return fail('unsupported-config', `${where}: tokenizer.ggml.model ${show(model)} is not supported (Peregrine reads "llama" and "gpt2" vocabularies)`);
  }
  const config: Record<string, unknown> = {
    bos_token: bos === null ? null : tokens[bos], eos_token: eos === null ? null : tokens[eos], unk_token: unk === null ? null : tokens[unk],
    add_bos_token: addBos, chat_template: meta.has('tokenizer.chat_template') ? meta.string('tokenizer.chat_template') : null,
  };
  return Tokenizer.fromObjects(json, config, where);
}
