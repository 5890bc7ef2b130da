"""GGUF files written from the Llama-family test checkpoints, the way llama.cpp's convert_hf_to_gguf.py writes them
(test/fixtures/gguf/), and Hugging Face's tokenization of a few hundred strings by each trained tokenizer.

Runs where numpy, safetensors, tokenizers and the `gguf` package are installed (no torch needed):

    python3 tools/reference/make_gguf_fixtures.py test/fixtures

- llama-tiny.gguf:            F32 (the bf16 weights widened), "llama" architecture: Q and K rows interleaved per
                              head as llama.cpp's converter permutes them; SentencePiece vocabulary with scores.
- llama-tiny-q8_0.gguf:       its matrices in Q8_0 (norms and embeddings F32); llama-tiny-q8_0-dequant.gguf: the
                              same Q8_0 weights dequantized back to F32 (what the quantized model must compute).
- llama-tiny-q4_0.gguf:       its matrices in Q4_0 (and llama-tiny-q4_0-dequant.gguf).
- llama3-tiny.gguf:           F16, rope scaling "llama3" carried as llama.cpp carries it: a rope_freqs tensor of
                              per-pair factors; byte-level BPE vocabulary ("gpt2", pre "llama-bpe").
- qwen2-tiny.gguf:            BF16 with q/k/v biases, "qwen2" architecture, ("gpt2", pre "qwen2") vocabulary.
- llama-k-tiny.gguf:          a Llama of 256-wide rows with Gaussian weights (K-quant blocks hold 256 values; tied
                              embeddings) in F16 (norms too); llama-k-tiny-{q4_k_m,q5_k,q6_k}.gguf: the same weights in K-quant
                              blocks (kquants.py), q4_k_m mixing Q4_K and Q6_K as llama.cpp's Q4_K_M does.
- tokens-<tokenizer>.json:    ids of each string by the tokenizer.json (Hugging Face tokenizers), with special tokens.
"""
import json
import math
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, TokenType
import gguf.quants as quants
from tokenizers import Tokenizer

import kquants

NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<module...>.weight
    return f"blk.{parts[2]}.{NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"


def permute(w, heads):
    """llama.cpp's interleaving of the rotary halves of each head (convert_hf_to_gguf's LlamaModel.permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_bf16(path):
    """A safetensors file's tensors as fp32 numpy arrays (safetensors.numpy has no bfloat16)."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        raw = np.frombuffer(data[b:e], dtype={"F32": np.float32, "F16": np.float16, "BF16": np.uint16}[v["dtype"]])
        if v["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[k] = raw.astype(np.float32).reshape(v["shape"])
    return out


def add_vocab(w, tok_dir, kind, pre=None, eos=None, eot=None, add_bos=True):
    j = json.load(open(os.path.join(tok_dir, "tokenizer.json")))
    cfg = json.load(open(os.path.join(tok_dir, "tokenizer_config.json")))
    vocab = dict(j["model"]["vocab"])
    for a in j["added_tokens"]:
        vocab[a["content"]] = a["id"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    special = {a["id"] for a in j["added_tokens"] if a["special"]}
    w.add_tokenizer_model(kind)
    w.add_token_list(tokens)
    if kind == "llama":
        types = [TokenType.UNKNOWN if t == "<unk>" else TokenType.CONTROL if i in special else
                 TokenType.BYTE if (t.startswith("<0x") and len(t) == 6) else TokenType.NORMAL for i, t in enumerate(tokens)]
        w.add_token_scores([-float(i) for i in range(len(tokens))])  # SentencePiece BPE: later merges score lower
        w.add_unk_token_id(vocab["<unk>"])
        w.add_bos_token_id(vocab["<s>"])
        w.add_eos_token_id(vocab["</s>"])
        w.add_add_space_prefix(True)
    else:
        types = [TokenType.CONTROL if i in special else TokenType.NORMAL for i in range(len(tokens))]
        w.add_tokenizer_pre(pre)
        w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]])
        if cfg.get("bos_token"):
            w.add_bos_token_id(vocab[cfg["bos_token"]])
        w.add_eos_token_id(vocab[eos])
        if eot:
            w.add_eot_token_id(vocab[eot])
    w.add_token_types(types)
    w.add_add_bos_token(add_bos)
    if cfg.get("chat_template"):
        w.add_chat_template(cfg["chat_template"])


def write(path, arch, config, weights, tok_dir, vocab_args, matrix_type, float_type, rope_freqs=None):
    """matrix_type: the type of every matrix but the embedding, or a function of (gguf name, array) giving each tensor's."""
    w = GGUFWriter(path, arch)
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    rope = config.get("rope_parameters") or {}
    w.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    w.add_file_type(0)
    add_vocab(w, tok_dir, *vocab_args)
    for name in sorted(weights):
        t = weights[name]
        if arch == "llama" and name.endswith("q_proj.weight"):
            t = permute(t, heads)
        if arch == "llama" and name.endswith("k_proj.weight"):
            t = permute(t, kv)
        if callable(matrix_type):
            kind = matrix_type(gguf_name(name), t)
        else:
            kind = matrix_type if (t.ndim == 2 and name != "model.embed_tokens.weight") else float_type
        if kind == Q.F32:
            w.add_tensor(gguf_name(name), t.astype(np.float32))
        elif kind == Q.F16:
            w.add_tensor(gguf_name(name), t.astype(np.float16))
        elif kind in kquants.QUANTIZERS:
            data = kquants.quantize(t, kind)
            w.add_tensor(gguf_name(name), data, raw_shape=data.shape, raw_dtype=kind)
        else:
            data = quants.quantize(t.astype(np.float32), kind)
            w.add_tensor(gguf_name(name), data, raw_shape=data.shape, raw_dtype=kind)
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama3_factors(config):
    """convert_hf_to_gguf's rope_freqs for rope type llama3: default rate / llama3 rate per pair."""
    r = config["rope_parameters"]
    base, dim = r["rope_theta"], config["head_dim"]
    factor, low, high, old = r["factor"], r["low_freq_factor"], r["high_freq_factor"], r["original_max_position_embeddings"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            out.append(1)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


# llama.cpp's Q4_K_M keeps attn_v and ffn_down (here: all of them) in Q6_K; "*" is every other matrix
K_FILES = {"q4_k_m": {"*": Q.Q4_K, "attn_v": Q.Q6_K, "ffn_down": Q.Q6_K}, "q5_k": {"*": Q.Q5_K}, "q6_k": {"*": Q.Q6_K}}


def k_tiny():
    """Two Llama layers of 256-wide rows (GQA 4:2, head 64), embeddings tied, Gaussian weights rounded to fp16."""
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 256,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 951,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}
    rng = np.random.default_rng(8)
    h, f = config["hidden_size"], config["intermediate_size"]
    shapes = {"model.embed_tokens.weight": (951, h), "model.norm.weight": (h,)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                       p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (128, h), p + "self_attn.v_proj.weight": (128, h),
                       p + "self_attn.o_proj.weight": (h, h), p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                       p + "mlp.down_proj.weight": (h, f)})
    weights = {}
    for name, shape in shapes.items():
        t = 1 + 0.1 * rng.standard_normal(shape) if len(shape) == 1 else rng.standard_normal(shape) / math.sqrt(shape[1] if "embed" not in name else 1)
        weights[name] = t.astype(np.float16).astype(np.float32)
    return config, weights


def strings():
    """A few hundred strings: words, unicode, whitespace runs, digits, emoji, code, control-token text."""
    rng = np.random.default_rng(3)
    pieces = ["Hello", " world", "!", "  ", "\t", "\n", "\n\n", "   x", "naïve", " café", "日本語", "东京", "한국어", " Быстрая", "🙂", "👍🏽", "🚀✨",
              "12345", " 3.14159", "2026-11-23", "1,000,000", "def f(x):", "    return x * 2", "{ a: [1, 2] }", "<s>", "</s>", "<|im_end|>",
              "<|eot_id|>", "don't", " I'm", " we'll", "THE END", "a", "—", "“quotes”", "\u00a0", "e\u0301", "ﬁ", "Ⅻ", "\\", "'s"]
    out = list(pieces)
    for _ in range(300 - len(pieces)):
        out.append("".join(pieces[i] for i in rng.integers(0, len(pieces), size=int(rng.integers(1, 7)))))
    return out


def main():
    root = sys.argv[1]
    out = os.path.join(root, "gguf")
    os.makedirs(out, exist_ok=True)

    def model(name):
        d = os.path.join(root, name)
        return json.load(open(os.path.join(d, "config.json"))), read_bf16(os.path.join(d, "model.safetensors"))

    toks = os.path.join(root, "tokenizers")
    config, weights = model("llama-tiny")
    llama_vocab = ("llama",)
    write(os.path.join(out, "llama-tiny.gguf"), "llama", config, weights, os.path.join(toks, "llama2-style"), llama_vocab, Q.F32, Q.F32)
    for kind, label in ((Q.Q8_0, "q8_0"), (Q.Q4_0, "q4_0")):
        write(os.path.join(out, f"llama-tiny-{label}.gguf"), "llama", config, weights, os.path.join(toks, "llama2-style"), llama_vocab, kind, Q.F32)
        # the quantized weights dequantized: what the quantized model computes, in F32
        deq = {k: (quants.dequantize(quants.quantize(v, kind), kind).reshape(v.shape) if v.ndim == 2 and k != "model.embed_tokens.weight" else v)
               for k, v in weights.items()}
        write(os.path.join(out, f"llama-tiny-{label}-dequant.gguf"), "llama", config, deq, os.path.join(toks, "llama2-style"), llama_vocab, Q.F32, Q.F32)

    config, weights = model("llama3-tiny")
    write(os.path.join(out, "llama3-tiny.gguf"), "llama", config, weights, os.path.join(toks, "llama3-style"),
          ("gpt2", "llama-bpe", "<|end_of_text|>", "<|eot_id|>", True), Q.F16, Q.F32, rope_freqs=llama3_factors(config))

    config, weights = model("qwen2-tiny")
    write(os.path.join(out, "qwen2-tiny.gguf"), "qwen2", config, weights, os.path.join(toks, "qwen2-style"),
          ("gpt2", "qwen2", "<|im_end|>", None, False), Q.BF16, Q.F32)

    config, weights = k_tiny()
    write(os.path.join(out, "llama-k-tiny.gguf"), "llama", config, weights, os.path.join(toks, "llama2-style"), llama_vocab, Q.F16, Q.F16)
    for label, kinds in K_FILES.items():
        write(os.path.join(out, f"llama-k-tiny-{label}.gguf"), "llama", config, weights, os.path.join(toks, "llama2-style"), llama_vocab,
              lambda name, t, kinds=kinds: Q.F32 if t.ndim == 1 else kinds.get(name.split(".")[-2], kinds["*"]), Q.F32)
        for name, t in weights.items():
            if t.ndim == 2:
                kind = kinds.get(gguf_name(name).split(".")[-2], kinds["*"])
                err = kquants.roundtrip(t, kind)[1] if kind in kquants.QUANTIZERS else 0
                assert err < {Q.Q4_K: 0.1, Q.Q5_K: 0.05, Q.Q6_K: 0.025}.get(kind, 0.01), (label, name, err)

    texts = strings()
    for name in ("llama2-style", "llama3-style", "qwen2-style"):
        t = Tokenizer.from_file(os.path.join(toks, name, "tokenizer.json"))
        with open(os.path.join(out, f"tokens-{name}.json"), "w") as f:
            json.dump({"texts": texts, "ids": [t.encode(s).ids for s in texts]}, f, ensure_ascii=False, separators=(",", ":"))
    for f in sorted(os.listdir(out)):
        print(f, os.path.getsize(os.path.join(out, f)))


if __name__ == "__main__":
    main()
