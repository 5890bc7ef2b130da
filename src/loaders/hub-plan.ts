// Which files of a hub repo a snapshot gets: what the local loaders read from a model directory (model-dir.ts's
// weights, sentence-transformers.ts's module files, the tokenizer's files), picked from the hub's file list.
// The files that name other files (a shard index, modules.json) are fetched first and checked before anything
// they name is; nothing else is fetched (no optimizer.pt, training_args.bin or README).

import { readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { PeregrineError, show } from '../errors.js';
import { isShardName, WEIGHT_FORMATS } from './model-dir.js';
import { moduleFiles, readModulesFile } from './sentence-transformers.js';

export const CONFIG = 'config.json';
/** What Tokenizer.fromDir reads; a causal LM needs both, an encoder runs on token ids without them. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'];
const OPTIONAL = ['special_tokens_map.json', 'generation_config.json', 'chat_template.jinja'];
const MODULES = 'modules.json';
const ST_CONFIG = 'sentence_bert_config.json';

export interface Plan {
  /** fetched first: the weights' index and modules.json, where the repo has them */
  lists: string[];
  /** once the lists are in `snapshot`: the files after config.json, with what the lists name checked */
  rest(snapshot: string): string[];
}

/** The files to fetch from a repo of files `listed`; `where` names it for errors ("model x on https://..."). */
export function planFiles(where: string, listed: string[]): Plan {
  const names = new Set(listed), has = (name: string) => names.has(name);
  const broken = (what: string) => new PeregrineError('download', `${where}: ${what}; the repo is broken, report it to its owner`);
  const format = WEIGHT_FORMATS.find((f) => has(f.single) || has(f.index));
  if (!has(CONFIG) || !format) {
    const read = WEIGHT_FORMATS.flatMap((f) => [f.single, f.index]).join(', ');
    const other = listed.filter((f) => /\.(bin|pt|pth|h5|msgpack|ckpt|gguf|onnx)$/.test(f)).slice(0, 3);
    const what = has(CONFIG) ? `weights Peregrine reads (${read})${other.length ? `, only ${other.join(', ')}` : ''}` : CONFIG;
    throw new PeregrineError('download', `${where} has no ${what}; Peregrine needs ${CONFIG} and one of ${read}, choose a repo that has them`);
  }
  const index = has(format.single) ? undefined : format.index;
  const lists = [...(index ? [index] : []), ...(has(MODULES) ? [MODULES] : [])];
  return {
    lists,
    rest(snapshot) {
      const weights = index ? shardsOf(join(snapshot, index), index, extname(format.single), broken) : [format.single];
      const missing = weights.find((s) => !has(s));
      if (missing) throw broken(`${index} names shard ${missing}, which the repo does not have`);
      const modules = has(MODULES) ? moduleFiles(readModulesFile(join(snapshot, MODULES))) : [];
      const pooling = modules.find((f) => f !== ST_CONFIG && !has(f));
      if (pooling) throw broken(`${MODULES} names a Pooling module whose settings ${pooling} the repo does not have`);
      const extra = [...TOKENIZER_FILES, ...OPTIONAL, ...modules].filter((f) => has(f) && f !== CONFIG);
      return [...new Set([...extra, ...weights])];
    },
  };
}

/** Shard file names from an index's weight_map, each a file beside the index with the format's extension. */
function shardsOf(path: string, index: string, ext: string, broken: (what: string) => PeregrineError): string[] {
  let parsed: { weight_map?: unknown };
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as { weight_map?: unknown };
  } catch (err) {
    throw broken(`${index} is not valid JSON (${(err as Error).message})`);
  }
  const map = parsed?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw broken(`${index} has no weight_map object`);
  const shards = [...new Set(Object.values(map))];
  // a shard of another extension (optimizer.pt) is never fetched
  const bad = shards.find((s) => !isShardName(s) || !s.endsWith(ext));
  if (bad !== undefined || shards.length === 0) {
    throw broken(`${index} has an invalid shard name (${show(bad ?? 'none')}; shards are ${ext} files beside the index)`);
  }
  return shards as string[];
}
