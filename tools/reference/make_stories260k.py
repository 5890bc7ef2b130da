"""Karpathy's trained stories260K (llama2.c, as llama.cpp's GGUF of it: ggml-org/models tinyllamas/stories260K.gguf,
sha256 270cba1b...) as a Hugging Face Llama directory for the quantization accuracy measure (npm run bench --
quant-perplexity), its feed-forward width zero-padded from 172 to 192.

Why the padding: 172 is not a multiple of 32, so no quantizer's blocks (Q8_0 32, FP8 32, int4 groups of 32 to 128)
divide the down projection's rows. Zero rows of gate and up give silu(0) * 0 = 0, and zero columns of down add
nothing, so the padded model computes the same function (the bench checks: the same perplexity as the GGUF file).

What else changes from the GGUF: Q and K rows go back from llama.cpp's interleaved rotary order to Hugging Face's
(as transformers' GGUF loader un-permutes them); max_position_embeddings is 512, the length llama2.c trained it at
(the GGUF says 2048, its converter's default). The tokenizer is transformers' own conversion of the GGUF vocabulary.
Needs numpy, safetensors, tokenizers, transformers (no torch) and the `gguf` package:

    python3 tools/reference/make_stories260k.py stories260K.gguf OUT_DIR
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from safetensors.numpy import save_file
from tokenizers.processors import TemplateProcessing
from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

FFN = 192
NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def field(reader, name):
    f = reader.fields[name]
    return f.contents()


def unpermute(w, heads):
    """llama.cpp's interleaved rotary rows of each head back to Hugging Face's halves (transformers' reverse_permute_weights)."""
    dim = w.shape[0] // heads // 2
    return w.reshape(heads, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def main(src, out):
    r = GGUFReader(src)
    if field(r, "general.architecture") != "llama":
        sys.exit(f"{src} is not a llama GGUF file")
    hidden, ffn = field(r, "llama.embedding_length"), field(r, "llama.feed_forward_length")
    heads, kv_heads, layers = field(r, "llama.attention.head_count"), field(r, "llama.attention.head_count_kv"), field(r, "llama.block_count")
    if ffn > FFN:
        sys.exit(f"feed_forward_length {ffn} is wider than the {FFN} this pads to")
    tensors = {}
    for t in r.tensors:
        if t.tensor_type.name != "F32":
            sys.exit(f"{t.name} is {t.tensor_type.name}; this reads the F32 file")
        w = np.array(t.data, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
        parts = t.name.split(".")
        if parts[0] == "blk":
            kind = parts[2]
            if kind == "attn_q":
                w = unpermute(w, heads)
            elif kind == "attn_k":
                w = unpermute(w, kv_heads)
            elif kind in ("ffn_gate", "ffn_up"):
                w = np.pad(w, ((0, FFN - ffn), (0, 0)))
            elif kind == "ffn_down":
                w = np.pad(w, ((0, 0), (0, FFN - ffn)))
            name = f"model.layers.{parts[1]}.{NAMES[kind]}.weight"
        else:
            name = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}[t.name]
        tensors[name] = np.ascontiguousarray(w)
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})

    tokens = [bytes(x).decode() if not isinstance(x, str) else x for x in field(r, "tokenizer.ggml.tokens")]
    ids = {k: field(r, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown")}
    vocab = {
        "tokenizer_type": field(r, "tokenizer.ggml.model"), "tokens": tokens, "scores": list(field(r, "tokenizer.ggml.scores")),
        "token_type": list(field(r, "tokenizer.ggml.token_type")), "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
        "unk_token_id": ids["unknown"],
    }
    tokenizer, _ = convert_gguf_tokenizer("llama", vocab)
    # a BOS token first, as llama2.c encoded each story and as the GGUF file's tokenizer does (add_bos_token)
    bos = tokens[ids["bos"]]
    tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, ids["bos"])])
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": tokens[ids["bos"]], "eos_token": tokens[ids["eos"]], "unk_token": tokens[ids["unknown"]],
                   "add_bos_token": True, "add_eos_token": False, "model_max_length": 512}, f, indent=2)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden, "intermediate_size": FFN,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "num_hidden_layers": layers,
        "rms_norm_eps": float(field(r, "llama.attention.layer_norm_rms_epsilon")), "rope_theta": 10000.0,
        "max_position_embeddings": 512, "vocab_size": len(tokens), "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"{out}: {layers} layers, hidden {hidden}, ffn {ffn} -> {FFN}, {heads} heads ({kv_heads} KV), vocab {len(tokens)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
