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

/** A module modules.json lists, of the kinds Peregrine runs; `path` is relative to the model directory. */
export interface StModule { kind: 'Transformer' | 'Pooling' | 'Normalize'; path: string }

/** A module's path: inside the directory (relative, no '..', no drive or NUL), with '/' between parts. */
function modulePath(path: unknown): string | undefined {
  if (typeof path !== 'string' || /^([\\/]|[A-Za-z]:)|\0/.test(path)) return undefined;
  const parts = path.split(/[\\/]/);
  return parts.includes('..') ? undefined : parts.filter((p) => p !== '' && p !== '.').join('/');
}

/** modules.json's modules, checked: each a Transformer (kept in the directory itself), a Pooling or a Normalize module with a path inside the directory. */
export function parseModules(list: unknown, listPath: string): StModule[] {
  if (!Array.isArray(list)) fail('bad-config', `${listPath} must hold a list of modules ({"type", "path"}); restore the file from the model's source`);
  return list.map((m: unknown, i): StModule => {
    const { type, path: raw } = (m ?? {}) as { type?: unknown; path?: unknown };
    const path = modulePath(raw);
    if (typeof type !== 'string' || path === undefined) {
      fail('bad-config', `${listPath}: module ${i} must have a "type" and a relative "path" inside the directory (no "..", not absolute), got ${show(m)}; restore the file from the model's source`);
    }
    const kind = type.startsWith(MODULE) ? type.slice(MODULE.length) : type;
    if (kind === 'Transformer') {
      if (path !== '') fail('unsupported-config', `${listPath}: module ${i} keeps the transformer in ${JSON.stringify(raw)}; Peregrine reads it from the directory itself (config.json and the weights beside modules.json)`);
    } else if (kind !== 'Pooling' && kind !== 'Normalize') {
      fail('unsupported-config', `${listPath}: module ${i} is ${type}, which Peregrine does not run (it runs Transformer, Pooling and Normalize); this model cannot run on Peregrine`);
    }
    return { kind, path };
  });
}

/** The files, relative to the directory, that the modules' settings are read from (beside modules.json itself). */
export function moduleFiles(modules: StModule[]): string[] {
  return [...modules.filter((m) => m.kind === 'Pooling').map((m) => poolingConfig(m.path)), BERT_CONFIG];
}

const BERT_CONFIG = 'sentence_bert_config.json';
const poolingConfig = (path: string) => (path ? `${path}/config.json` : 'config.json');

/** modules.json's text, parsed (readJsonFile wants an object; modules.json is a list). */
export function readModulesFile(listPath: string): StModule[] {
  let text: string, list: unknown;
  try {
    text = readFileSync(listPath, 'utf8');
  } catch (err) {
    throw fsError(err, 'modules.json', listPath);
  }
  try {
    list = JSON.parse(text);
  } catch (err) {
    fail('bad-config', `${listPath} is not valid JSON (${(err as Error).message}); restore the file from the model's source`);
  }
  return parseModules(list, listPath);
}

/** The defaults a sentence-transformers directory sets, or null when `dir` has no modules.json. */
export function readSentenceTransformers(dir: string): SentenceTransformersConfig | null {
  const listPath = join(dir, 'modules.json');
  if (!existsSync(listPath)) return null;
  const out: SentenceTransformersConfig = { normalize: false };
  for (const m of readModulesFile(listPath)) {
    if (m.kind === 'Pooling') out.pooling = poolingMode(join(dir, poolingConfig(m.path)));
    else if (m.kind === 'Normalize') out.normalize = true;
  }
  const bertConfig = join(dir, BERT_CONFIG);
  if (existsSync(bertConfig)) {
    const v = readJsonFile(bertConfig, BERT_CONFIG).max_seq_length;
    if (v !== undefined && v !== null) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) fail('bad-config', `${bertConfig}: field "max_seq_length" must be a positive integer, got ${show(v)}; fix the file`);
      out.maxSeqLength = v;
    }
  }
  return out;
}
