// Tokenizers over tokenizer.json + tokenizer_config.json, through @huggingface/tokenizers
// (which matches Hugging Face's Rust tokenizers on GPT-2 and BERT files).
import type { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fail } from '../errors.js';
import { readJsonFile } from '../loaders/model-dir.js';
import { createHfTokenizer } from './vocab-tables.js';

export class Tokenizer {
  private constructor(private readonly tok: HfTokenizer, private readonly config: Record<string, unknown>, private readonly templateFile: string | null) {}

  static fromDir(dir: string): Tokenizer {
    const json = readJsonFile(join(dir, 'tokenizer.json'), 'tokenizer.json');
    const config = readJsonFile(join(dir, 'tokenizer_config.json'), 'tokenizer_config.json');
    try {
      const templatePath = join(dir, 'chat_template.jinja');
      return new Tokenizer(createHfTokenizer(json, config), config, existsSync(templatePath) ? readFileSync(templatePath, 'utf8') : null);
    } catch (err) {
      return fail('bad-config', `${join(dir, 'tokenizer.json')} could not be read as a tokenizer (${(err as Error).message}); restore it from the model's source`);
    }
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: ArrayLike<number>, skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.tok.decode(Array.from(ids), { skip_special_tokens: skipSpecialTokens });
  }

  /** The text of a special token named in tokenizer_config.json ("eos_token", "bos_token", ...). */
  specialToken(key: string): string | undefined {
    const v = this.config[key];
    return typeof v === 'string' ? v : (v as { content?: string } | undefined)?.content;
  }

  /** The id of a special token named in tokenizer_config.json ("eos_token", "pad_token", ...). */
  specialId(key: string): number | undefined {
    const content = this.specialToken(key);
    return content === undefined ? undefined : this.tok.token_to_id(content);
  }

  /** The chat template (chat_template.jinja, or tokenizer_config.json's "chat_template"; its "default" when it lists several), or null. */
  chatTemplate(): string | null {
    if (this.templateFile !== null) return this.templateFile;
    const t = this.config.chat_template;
    if (typeof t === 'string') return t;
    if (Array.isArray(t)) {
      const named = t as { name?: string; template?: string }[];
      return (named.find((x) => x.name === 'default') ?? named[0])?.template ?? null;
    }
    return null;
  }
}
