// Tokenizers over tokenizer.json + tokenizer_config.json, through @huggingface/tokenizers
// (which matches Hugging Face's Rust tokenizers on GPT-2 and BERT files).
import type { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fail, show } from '../errors.js';
import { readJsonFile } from '../loaders/model-dir.js';
import { createHfTokenizer } from './vocab-tables.js';

/** A token id as the model takes it: what a broken vocabulary maps text to otherwise ([], null, -1, "x") would index the embeddings out of bounds. */
function isTokenId(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

export class Tokenizer {
  private constructor(private readonly tok: HfTokenizer, private readonly config: Record<string, unknown>, private readonly templateFile: string | null, private readonly dir: string) {}

  /** A tokenizer from tokenizer.json and tokenizer_config.json contents (a GGUF vocabulary: gguf-vocab.ts); `where` names it in messages. */
  static fromObjects(json: Record<string, unknown>, config: Record<string, unknown>, where: string): Tokenizer {
    try {
      return new Tokenizer(createHfTokenizer(json, config), config, null, where);
    } catch (err) {
      return fail('bad-gguf', `the vocabulary of ${where} could not be read as a tokenizer (${(err as Error).message}); the file's tokenizer.ggml metadata is broken`);
    }
  }

  static fromDir(dir: string): Tokenizer {
    const json = readJsonFile(join(dir, 'tokenizer.json'), 'tokenizer.json');
    const config = readJsonFile(join(dir, 'tokenizer_config.json'), 'tokenizer_config.json');
    try {
      const templatePath = join(dir, 'chat_template.jinja');
      return new Tokenizer(createHfTokenizer(json, config), config, existsSync(templatePath) ? readFileSync(templatePath, 'utf8') : null, dir);
    } catch (err) {
      return fail('bad-config', `${join(dir, 'tokenizer.json')} could not be read as a tokenizer (${(err as Error).message}); restore it from the model's source`);
    }
  }

  /** The library fails on what the files say (a wrong type deep in tokenizer.json shows only when used): that is a broken file, not a bug. */
  private broken(what: string, err: unknown): never {
    return fail('bad-config', `the tokenizer files in ${this.dir} failed to ${what} (${(err as Error)?.message ?? String(err)}); restore tokenizer.json and tokenizer_config.json from the model's source`);
  }

  encode(text: string, addSpecialTokens = true): number[] {
    let ids: unknown;
    try {
      ids = this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    } catch (err) {
      this.broken(`encode ${JSON.stringify(text.slice(0, 40))}`, err);
    }
    if (!Array.isArray(ids) || !ids.every(isTokenId)) {
      const bad = Array.isArray(ids) ? ids.find((x) => !isTokenId(x)) : ids;
      fail('bad-config', `the tokenizer files in ${this.dir} map text to ${show(bad)}, which is not a token id; fix the ids in tokenizer.json (model.vocab, added_tokens, post_processor)`);
    }
    return ids;
  }

  decode(ids: ArrayLike<number>, skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    try {
      return this.tok.decode(Array.from(ids), { skip_special_tokens: skipSpecialTokens });
    } catch (err) {
      return this.broken('decode token ids', err);
    }
  }

  /** The vocabulary's string for one id (WordPiece's "##s", byte-level BPE's "Ġthe"), or undefined. */
  tokenText(id: number): string | undefined {
    try {
      return this.tok.id_to_token(id) ?? undefined;
    } catch (err) {
      return this.broken('look up a token id', err);
    }
  }

  /** Whether `id` is a special token of tokenizer.json's added tokens ([CLS], <s>, <mask>, ...). */
  isSpecial(id: number): boolean {
    return this.tok.get_added_tokens_decoder().get(id)?.special === true;
  }

  /** The text of a special token named in tokenizer_config.json ("eos_token", "bos_token", ...): a string or {"content": string}. */
  specialToken(key: string): string | undefined {
    const v = this.config[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v;
    const content = (v as { content?: unknown }).content;
    if (typeof content === 'string') return content;
    return fail('bad-config', `tokenizer_config.json in ${this.dir}: "${key}" must be a token or {"content": token}, got ${show(v)}; fix the file`);
  }

  /** The id of a special token named in tokenizer_config.json ("eos_token", "pad_token", ...). */
  specialId(key: string): number | undefined {
    const content = this.specialToken(key);
    if (content === undefined) return undefined;
    let id: unknown;
    try {
      id = this.tok.token_to_id(content);
    } catch (err) {
      this.broken(`look up ${key}`, err);
    }
    if (id === undefined || id === null) return undefined;
    if (!isTokenId(id)) fail('bad-config', `the tokenizer files in ${this.dir} give ${key} ${show(content)} the id ${show(id)}, which is not a token id; fix tokenizer.json`);
    return id;
  }

  /** The chat template (chat_template.jinja, or tokenizer_config.json's "chat_template"; its "default" when it lists several), or null. */
  chatTemplate(): string | null {
    if (this.templateFile !== null) return this.templateFile;
    const t = this.config.chat_template;
    if (t === undefined || t === null || (Array.isArray(t) && t.length === 0)) return null;
    if (typeof t === 'string') return t;
    if (Array.isArray(t) && t.every((x) => typeof (x as { template?: unknown } | null)?.template === 'string')) {
      const named = t as { name?: unknown; template: string }[];
      return (named.find((x) => x.name === 'default') ?? named[0]).template;
    }
    return fail('bad-config', `tokenizer_config.json in ${this.dir}: "chat_template" must be a template or a list of {"name", "template"}, got ${show(t)}; fix the file`);
  }
}
