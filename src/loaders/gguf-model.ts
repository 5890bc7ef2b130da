// A GGUF file as a model directory: the Hugging Face config its metadata describes, and its tensors under Hugging
// Face names (Q and K rows put back in Hugging Face's order where llama.cpp's converter interleaved them), so that
// the model files (src/models/) read GGUF checkpoints as they read safetensors ones.
import { fail, show } from '../errors.js';
import { GgufFile, type GgufValue } from './gguf.js';
import type { ModelDir, TensorSource } from './model-dir.js';
import { WeightStore } from './model-dir.js';
import { isQuantType, rowBytes } from './quant.js';
import type { TensorInfo } from './safetensors.js';
import { toFloat32 } from './dtypes.js';

/** general.architecture -> the Hugging Face class and model_type; llama.cpp files Mistral under "llama". */
const ARCHS: Record<string, { className: string; modelType: string; permuteQK: boolean }> = {
  llama: { className: 'LlamaForCausalLM', modelType: 'llama', permuteQK: true },
  qwen2: { className: 'Qwen2ForCausalLM', modelType: 'qwen2', permuteQK: false },
  qwen3: { className: 'Qwen3ForCausalLM', modelType: 'qwen3', permuteQK: false },
};

/** llama.cpp tensor names -> Hugging Face names (without the "model." prefix for the layers). */
const LAYER_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm', attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj', attn_q_norm: 'self_attn.q_norm', attn_k_norm: 'self_attn.k_norm', ffn_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj',
};
const TOP_NAMES: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight',
};

export class Metadata {
  constructor(readonly map: Map<string, GgufValue>, private readonly path: string) {}

  private bad(key: string, want: string): never {
    return fail('bad-gguf', `${this.path}: metadata ${key} must be ${want}, got ${show(this.map.get(key))}`);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  int(key: string, fallback?: number): number {
    const v = this.map.get(key);
    if (v === undefined) return fallback ?? fail('bad-gguf', `${this.path}: metadata ${key} is missing; the file does not describe its model`);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.bad(key, 'a non-negative integer');
    return v;
  }

  number(key: string, fallback?: number): number {
    const v = this.map.get(key);
    if (v === undefined) return fallback ?? fail('bad-gguf', `${this.path}: metadata ${key} is missing; the file does not describe its model`);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.bad(key, 'a number');
    return v;
  }

  string(key: string, fallback?: string): string {
    const v = this.map.get(key);
    if (v === undefined) return fallback ?? fail('bad-gguf', `${this.path}: metadata ${key} is missing; the file does not describe its model`);
    if (typeof v !== 'string') this.bad(key, 'a string');
    return v;
  }
}

/** Hugging Face's row order of a rotary projection [heads * D, ...] from llama.cpp's (pairs interleaved per head). */
function unpermuteRows(bytes: Uint8Array, heads: number, rows: number, rowLen: number): Uint8Array {
  const out = new Uint8Array(bytes.length), D = rows / heads, half = D / 2;
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < 2; t++) {
      for (let j = 0; j < half; j++) {
        const src = (h * D + 2 * j + t) * rowLen, dst = (h * D + t * half + j) * rowLen;
        out.set(bytes.subarray(src, src + rowLen), dst);
      }
    }
  }
  return out;
}

/** The GGUF file's tensors under Hugging Face names. */
class GgufTensors implements TensorSource {
  readonly tensors = new Map<string, TensorInfo>();
  private readonly source = new Map<string, string>();

  constructor(private readonly file: GgufFile, private readonly permute: { q: number; k: number } | null) {
    for (const [name, info] of file.tensors) {
      const hf = hfName(name);
      if (hf === null) continue;
      this.tensors.set(hf, { ...info, name: hf });
      this.source.set(hf, name);
    }
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) fail('weights-mismatch', `tensor ${name} is not in ${this.file.path}`);
    return t;
  }

  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    const bytes = this.file.readBytes(this.source.get(name)!);
    const heads = !this.permute ? 0 : /q_proj\.(weight|bias)$/.test(name) ? this.permute.q : /k_proj\.(weight|bias)$/.test(name) ? this.permute.k : 0;
    if (!heads) return bytes;
    const rows = t.shape[0], cols = t.shape.length > 1 ? t.shape[1] : 1;
    const rowLen = isQuantType(t.dtype) ? rowBytes(t.dtype, cols) : bytes.length / rows;
    if (rows % heads !== 0 || (rows / heads) % 2 !== 0) fail('weights-mismatch', `tensor ${name} has ${rows} rows, which do not split into ${heads} heads of pairs`);
    return unpermuteRows(bytes, heads, rows, rowLen);
  }

  close(): void {
    this.file.close();
  }
}

function hfName(name: string): string | null {
  if (TOP_NAMES[name]) return TOP_NAMES[name];
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(name);
  if (!m || !LAYER_NAMES[m[2]]) return null;
  return `model.layers.${m[1]}.${LAYER_NAMES[m[2]]}.${m[3]}`;
}

/** A GGUF model file as a ModelDir; the caller closes its weights. */
export function openGgufModel(path: string): ModelDir & { gguf: Metadata } {
  const file = GgufFile.open(path);
  try {
    const meta = new Metadata(file.metadata, path);
    const arch = meta.string('general.architecture');
    const a = Object.hasOwn(ARCHS, arch) ? ARCHS[arch] : undefined;
    if (!a) fail('unknown-architecture', `${path}: GGUF architecture ${show(arch)} is not supported; Peregrine runs ${Object.keys(ARCHS).join(', ')} from GGUF files`);
    const k = (key: string) => `${arch}.${key}`;
    const heads = meta.int(k('attention.head_count'));
    const kvHeads = meta.int(k('attention.head_count_kv'), heads);
    const hidden = meta.int(k('embedding_length'));
    const embd = file.tensors.get('token_embd.weight');
    if (!embd) fail('weights-mismatch', `${path} has no token_embd.weight; it is not a complete model`);
    const headDim = meta.int(k('attention.key_length'), hidden / heads);
    const ropeDims = meta.int(k('rope.dimension_count'), headDim);
    if (ropeDims !== headDim) fail('unsupported-config', `${path}: ${k('rope.dimension_count')} ${ropeDims} is not the head size ${headDim} (partial rotary embeddings are not supported)`);
    const config: Record<string, unknown> = {
      architectures: [a.className], model_type: a.modelType,
      vocab_size: embd.shape[0], hidden_size: hidden, num_hidden_layers: meta.int(k('block_count')),
      intermediate_size: meta.int(k('feed_forward_length')), num_attention_heads: heads, num_key_value_heads: kvHeads,
      head_dim: headDim, max_position_embeddings: meta.int(k('context_length'), 2048),
      rms_norm_eps: meta.number(k('attention.layer_norm_rms_epsilon'), 1e-5), rope_theta: meta.number(k('rope.freq_base'), 10000),
      tie_word_embeddings: !file.tensors.has('output.weight'), hidden_act: 'silu',
      attention_bias: file.tensors.has('blk.0.attn_q.bias'),
      // end of sequence, of turn and of message all end generation
      eos_token_id: [...new Set(['eos', 'eot', 'eom'].filter((e) => meta.has(`tokenizer.ggml.${e}_token_id`)).map((e) => meta.int(`tokenizer.ggml.${e}_token_id`)))],
    };
    const scaling = meta.string(k('rope.scaling.type'), 'none');
    if (scaling === 'linear' || scaling === 'yarn') {
      config.rope_scaling = {
        rope_type: scaling, factor: meta.number(k('rope.scaling.factor')),
        ...(scaling === 'yarn' ? { original_max_position_embeddings: meta.int(k('rope.scaling.original_context_length')) } : {}),
      };
    } else if (scaling !== 'none') {
      fail('unsupported-config', `${path}: ${k('rope.scaling.type')} ${show(scaling)} is not supported (Peregrine reads none, linear and yarn from GGUF files)`);
    }
    const window = meta.int(k('attention.sliding_window'), 0);
    if (window > 0) fail('unsupported-config', `${path}: ${k('attention.sliding_window')} ${window} is not supported from GGUF files yet (the layers it applies to are not recorded)`);
    const tensors = new GgufTensors(file, a.permuteQK ? { q: heads, k: kvHeads } : null);
    let ropeFactors: Float32Array | undefined;
    if (file.tensors.has('rope_freqs.weight')) {
      const info = file.tensors.get('rope_freqs.weight')!;
      if (info.dtype !== 'F32' || info.shape.length !== 1 || info.shape[0] !== headDim / 2) {
        fail('bad-gguf', `${path}: rope_freqs.weight must be F32 [${headDim / 2}], got ${info.dtype} [${info.shape}]`);
      }
      ropeFactors = toFloat32(file.readBytes('rope_freqs.weight'), 'F32');
    }
    return { dir: path, config, generation: null, weights: new WeightStore([tensors]), ropeFactors, gguf: meta };
  } catch (err) {
    file.close();
    throw err;
  }
}
