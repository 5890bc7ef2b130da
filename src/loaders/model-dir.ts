// A Hugging Face model directory: config.json, weights (model.safetensors, or sharded through
// model.safetensors.index.json; else torch.save's pytorch_model.bin, or its shards through
// pytorch_model.bin.index.json), tokenizer.json + tokenizer_config.json.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fail, fsError, show } from '../errors.js';
import type { StoredQuant } from './quant.js';
import type { QuantScheme } from './schemes.js';
import { SafetensorsFile, type TensorInfo } from './safetensors.js';
import { TorchBinFile } from './torch-bin.js';

export function readJsonFile(path: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw fsError(err, what, path);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    fail('bad-config', `${path} is not valid JSON (${(err as Error).message}); restore the file from the model's source`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('bad-config', `${path} must hold a JSON object`);
  return value as Record<string, unknown>;
}

/** A file of named tensors (a safetensors shard, a pytorch_model.bin, a GGUF file under Hugging Face names). */
export interface TensorSource {
  readonly tensors: Map<string, TensorInfo>;
  info(name: string): TensorInfo;
  readBytes(name: string): Uint8Array;
  close(): void;
}

/** Weights of a checkpoint by name, across shards; tensors are read only when asked for. */
export class WeightStore {
  private readonly files: TensorSource[];
  private readonly where = new Map<string, TensorSource>();

  constructor(files: TensorSource[], weightMap?: Map<string, TensorSource>) {
    this.files = files;
    if (weightMap) this.where = weightMap;
    else for (const f of files) for (const name of f.tensors.keys()) this.where.set(name, f);
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.where.get(name);
    if (!f) fail('weights-mismatch', `the checkpoint has no tensor named ${name}; the config does not match the weights, or the weights are of another architecture`);
    return f.info(name);
  }

  readBytes(name: string): Uint8Array {
    this.info(name);
    return this.where.get(name)!.readBytes(name);
  }

  /** Number of elements and bytes per stored dtype, over all tensors. */
  dtypeSummary(): Map<string, { params: number; bytes: number }> {
    const out = new Map<string, { params: number; bytes: number }>();
    for (const name of this.where.keys()) {
      const t = this.info(name);
      const e = out.get(t.dtype) ?? { params: 0, bytes: 0 };
      e.params += t.shape.reduce((a, d) => a * d, 1);
      e.bytes += t.end - t.begin;
      out.set(t.dtype, e);
    }
    return out;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

/** A GEMM operand as the checkpoint stores it: its (prefixed) name, rows, and whether it is stored [in, out]. */
export interface MatrixPart {
  name: string;
  rows: number;
  transpose: boolean;
}

/** How a checkpoint's GEMM operands load (models/weights.ts, Checkpoint). */
export interface MatrixLoading {
  /** the type the transformer blocks' float matrices are quantized to as they load (LoadOptions.quantize) */
  quantize?: StoredQuant | null;
  /** the quantized layers config.json's quantization_config names (AWQ/GPTQ int4, SmoothQuant W8A8; null: none) */
  scheme?: QuantScheme | null;
  /** called with each block matrix as it loads (a backend tensor) and the checkpoint tensors it was made of */
  onMatrix?: (tensor: object, parts: MatrixPart[]) => void;
}

export interface ModelDir extends MatrixLoading {
  dir: string;
  config: Record<string, unknown>;
  /** generation_config.json, when the directory has one */
  generation: Record<string, unknown> | null;
  weights: WeightStore;
  /**
   * GGUF's rope_freqs tensor, when the model came from a GGUF file that has one: each rotary pair's rate is divided
   * by its factor (how llama.cpp files carry Llama 3.1's rope scaling).
   */
  ropeFactors?: Float32Array;
}

export function openModelDir(dir: string): ModelDir {
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    throw fsError(err, 'model directory', dir);
  }
  if (!st.isDirectory()) fail('file-missing', `${dir} is not a directory; pass a Hugging Face model directory (config.json + model.safetensors or pytorch_model.bin) or a hub id`);
  const config = readJsonFile(join(dir, 'config.json'), 'config.json');
  const genPath = join(dir, 'generation_config.json');
  const generation = existsSync(genPath) ? readJsonFile(genPath, 'generation_config.json') : null;
  return { dir, config, generation, weights: openWeights(dir) };
}

/**
 * Weight files a directory may hold, in the order they are looked for: safetensors first, then torch.save's
 * (a hub download picks its files in this order too).
 */
export const WEIGHT_FORMATS: { single: string; index: string; open: (path: string) => TensorSource }[] = [
  { single: 'model.safetensors', index: 'model.safetensors.index.json', open: (p) => SafetensorsFile.open(p) },
  { single: 'pytorch_model.bin', index: 'pytorch_model.bin.index.json', open: (p) => TorchBinFile.open(p) },
];

/** A shard is a file in the model directory: no path ("..", "/etc/passwd", "sub/x"), no NUL byte. */
export function isShardName(file: unknown): file is string {
  return typeof file === 'string' && /^[^/\\\0]+$/.test(file) && file !== '.' && file !== '..';
}

export function openWeights(dir: string): WeightStore {
  for (const f of WEIGHT_FORMATS) {
    if (existsSync(join(dir, f.single))) return new WeightStore([f.open(join(dir, f.single))]);
    if (existsSync(join(dir, f.index))) return openSharded(dir, f.index, f.open);
  }
  return fail('file-missing', `no ${WEIGHT_FORMATS.flatMap((f) => [f.single, f.index]).join(', ')} in ${dir}; a model directory needs safetensors weights (or torch.save's pytorch_model.bin)`);
}

/** Shards named by an index's weight_map, each opened once. */
function openSharded(dir: string, indexName: string, open: (path: string) => TensorSource): WeightStore {
  const index = join(dir, indexName);
  const json = readJsonFile(index, indexName);
  const map = json.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) fail('bad-config', `${index} has no weight_map object; restore the file from the model's source`);
  const shards = new Map<string, TensorSource>();
  const where = new Map<string, TensorSource>();
  try {
    for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
      if (!isShardName(file)) {
        fail('bad-config', `${index}: weight_map entry ${name} names an invalid shard ${show(file)} (shards are file names in the model directory); restore the file from the model's source`);
      }
      let shard = shards.get(file);
      if (!shard) {
        shard = open(join(dir, file));
        shards.set(file, shard);
      }
      if (!shard.tensors.has(name)) fail('weights-mismatch', `${index} places tensor ${name} in ${file}, but that shard has no such tensor; the index does not match the shards`);
      where.set(name, shard);
    }
  } catch (err) {
    for (const s of shards.values()) s.close();
    throw err;
  }
  return new WeightStore([...shards.values()], where);
}
