// A sentence-transformers directory: modules.json lists the modules an embedding goes through (the transformer,
// Pooling, Normalize); 1_Pooling/config.json (or wherever the Pooling module lives) says how token states are
// pooled; sentence_bert_config.json how many tokens the model reads. They become the embedder's defaults.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fail, fsError, show } from '../errors.js';
import { readJsonFile } from './model-dir.js';

export interface SentenceTransformersConfig {
  /** the Pooling module's mode; undefined without a Pooling module */
  pooling?: 'cls' | 'mean' | 'max';
  /** a Normalize module follows */
  normalize: boolean;
  /** sentence_bert_config.json's max_seq_length: longer texts are cut there (with truncation) or refused */
  maxSeqLength?: number;
}

const MODULE = 'sentence_transformers.models.';
const MODES: [string, 'cls' | 'mean' | 'max' | null][] = [
  ['pooling_mode_cls_token', 'cls'], ['pooling_mode_mean_tokens', 'mean'], ['pooling_mode_max_tokens', 'max'],
  ['pooling_mode_mean_sqrt_len_tokens', null], ['pooling_mode_weightedmean_tokens', null], ['pooling_mode_lasttoken', null],
];

/** The pooling mode a Pooling module's config.json turns on: one of cls, mean and max; others, and several at once, refused by name. */
function poolingMode(path: string): 'cls' | 'mean' | 'max' {
  const cfg = readJsonFile(path, 'the Pooling module\'s config.json');
  const on = MODES.filter(([key]) => {
    const v = cfg[key];
    if (v !== undefined && typeof v !== 'boolean') fail('bad-config', `${path}: field "${key}" must be true or false, got ${show(v)}; fix the file`);
    return v === true;
  });
  const unsupported = on.find(([, mode]) => mode === null);
  if (unsupported) fail('unsupported-config', `${path}: ${unsupported[0]} is not supported (Peregrine pools by cls, mean or max tokens); this model cannot run on Peregrine`);
  if (on.length !== 1) {
    fail('unsupported-config', `${path}: ${on.length ? `${on.map(([k]) => k).join(' and ')} are all on (their vectors concatenated)` : 'no pooling mode is on'}; Peregrine pools by exactly one of pooling_mode_cls_token, pooling_mode_mean_tokens, pooling_mode_max_tokens`);
  }
  return on[0][1]!;
}

/** The defaults a sentence-transformers directory sets, or null when `dir` has no modules.json. */
export function readSentenceTransformers(dir: string): SentenceTransformersConfig | null {
  const listPath = join(dir, 'modules.json');
  if (!existsSync(listPath)) return null;
  let text: string, list: unknown;
  try {
    text = readFileSync(listPath, 'utf8');
  } catch (err) {
    throw fsError(err, 'modules.json', listPath);
  }
  try {
    // readJsonFile wants an object; modules.json is a list
    list = JSON.parse(text);
  } catch (err) {
    fail('bad-config', `${listPath} is not valid JSON (${(err as Error).message}); restore the file from the model's source`);
  }
  if (!Array.isArray(list)) fail('bad-config', `${listPath} must hold a list of modules ({"type", "path"}); restore the file from the model's source`);
  const out: SentenceTransformersConfig = { normalize: false };
  list.forEach((m: unknown, i) => {
    const { type, path } = (m ?? {}) as { type?: unknown; path?: unknown };
    if (typeof type !== 'string' || typeof path !== 'string' || path.split(/[\\/]/).includes('..')) {
      fail('bad-config', `${listPath}: module ${i} must have a "type" and a "path" inside the directory, got ${show(m)}; restore the file from the model's source`);
    }
    const kind = type.startsWith(MODULE) ? type.slice(MODULE.length) : type;
    if (kind === 'Transformer') {
      if (path !== '') fail('unsupported-config', `${listPath}: module ${i} keeps the transformer in ${JSON.stringify(path)}; Peregrine reads it from the directory itself (config.json and the weights beside modules.json)`);
    } else if (kind === 'Pooling') {
      out.pooling = poolingMode(join(dir, path, 'config.json'));
    } else if (kind === 'Normalize') {
      out.normalize = true;
    } else {
      fail('unsupported-config', `${listPath}: module ${i} is ${type}, which Peregrine does not run (it runs Transformer, Pooling and Normalize); this model cannot run on Peregrine`);
    }
  });
  const bertConfig = join(dir, 'sentence_bert_config.json');
  if (existsSync(bertConfig)) {
    const v = readJsonFile(bertConfig, 'sentence_bert_config.json').max_seq_length;
    if (v !== undefined && v !== null) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) fail('bad-config', `${bertConfig}: field "max_seq_length" must be a positive integer, got ${show(v)}; fix the file`);
      out.maxSeqLength = v;
    }
  }
  return out;
}
