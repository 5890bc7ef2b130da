"""Builds small random-weight Llama-family checkpoints and their Hugging Face reference outputs (test/fixtures).

Runs where torch and transformers are installed (the GPU machine); the references run on the CPU in fp32 with
eager attention. The tokenizers are the trained ones of train_tokenizers.py (symlinked from ../tokenizers/).
Usage, from the repository root:

    python3 tools/reference/make_llama_fixtures.py --out /tmp/fixtures

Checkpoints (each: config.json, safetensors, tokenizer symlinks, reference.json with strided logits, every
position's logsumexp and argmax, and 32 greedy tokens per prompt):

- llama-tiny:     LlamaForCausalLM, GQA (4 query heads, 2 KV heads), untied head, bf16, llama2-style tokenizer.
- llama3-tiny:    Llama 3.1-style rope_scaling "llama3", head_dim 24 though hidden/heads is 16, one KV head (MQA),
                  tied embeddings, several end tokens, fp16, llama3-style tokenizer.
- mistral-tiny:   MistralForCausalLM with a sliding window of 12 (prompts and generation go past it), fp32.
- qwen2-tiny:     Qwen2ForCausalLM (bias on q, k, v), tied embeddings, bf16, qwen2-style tokenizer.
- qwen3-tiny:     Qwen3ForCausalLM (RMSNorm on each head of q and k), head_dim 32, fp32.
- llama-rope-*:   fp32 Llama variants for each other rope_scaling: linear, dynamic (prompts and generation beyond
                  max_position_embeddings, where the frequencies change with the length: its logits at position p
                  are of a forward over the first p + 1 tokens alone), yarn.
"""
import argparse
import copy
import json
import os

import torch
from tokenizers import Tokenizer
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

from make_fixtures import greedy, link_tokenizer, load_fp32, r, randomize_by, round_to, save, write_json

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café, 日本語 and emoji 🙂 too",
    "a",
]
LOGIT_STRIDE = 7


def randomize(model, seed):
    """RMSNorm gains near 1, non-zero biases, matrices scaled by fan-in, embeddings large enough that greedy
    argmax has clear winners."""
    randomize_by(model, seed, lambda name: "norm" in name, lambda name: "embed_tokens" in name)


def fresh(model):
    """The model as a new request finds it. Hugging Face's dynamic rotary scaling keeps state across calls (its rates
    only grow until a call shorter than max_position_embeddings comes), so each reference call starts from the
    original rates, as Peregrine computes every request."""
    rot = model.model.rotary_emb
    if "dynamic" in str(rot.rope_type):
        rot.register_buffer("inv_freq", rot.original_inv_freq.clone(), persistent=False)
        rot.max_seq_len_cached = rot.original_max_seq_len
    return model


def all_logits(model, ids, per_prefix):
    """Logits at every position: of one forward over the prompt, or (per_prefix) of a forward over each prefix
    alone, where a prefix's own length decides the rotary rates (dynamic scaling)."""
    with torch.no_grad():
        if per_prefix:
            return torch.stack([fresh(model)(input_ids=torch.tensor([ids[: i + 1]])).logits[0, -1] for i in range(len(ids))]).double()
        return fresh(model)(input_ids=torch.tensor([ids])).logits[0].double()


def dtype_error(model, prompts, per_prefix, want, sub):
    """How far Hugging Face's own fp16 and bf16 runs (weights and activations in that dtype, on the CPU) land from
    its fp32 logits, by the tests' measure (max |a - b| / max |b| per position, over the stored indices)."""
    out = {}
    for name, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        low = copy.deepcopy(model).to(dtype)
        worst = 0.0
        for p, ref in zip(prompts, want):
            got = all_logits(low, p["ids"], per_prefix)[:, sub]
            worst = max(worst, float(((got - ref[:, sub]).abs().max(dim=-1).values / ref[:, sub].abs().max(dim=-1).values).max()))
        out[name] = r(worst)
    return out


def reference(model, prompts, per_prefix):
    vocab = model.config.vocab_size
    sub = list(range(0, vocab, LOGIT_STRIDE))
    out = {"kind": "causal-lm", "prompts": prompts, "forward": [], "greedy": []}
    full = []
    for p in prompts:
        logits = all_logits(model, p["ids"], per_prefix)
        full.append(logits)
        out["forward"].append({"ids": p["ids"], "indices": sub, "logits": r(logits[:, sub]),
                               "logsumexp": r(torch.logsumexp(logits, dim=-1)), "argmax": logits.argmax(dim=-1).tolist()})
        out["greedy"].append({"ids": p["ids"], "generated": greedy(fresh(model), p["ids"])})
    out["hf_dtype_error"] = dtype_error(model, prompts, per_prefix, full, sub)
    return out


def build(out, name, cls, cfg, dtype, tokenizer, seed, prompts=None, per_prefix=False):
    torch.manual_seed(seed)
    model = cls(cfg)
    randomize(model, seed)
    round_to(model, dtype)
    path = os.path.join(out, name)
    save(model, path, dtype)
    link_tokenizer(path, tokenizer, os.path.join(out, "tokenizers"))
    if prompts is None:
        tok = Tokenizer.from_file(os.path.join(out, "tokenizers", tokenizer, "tokenizer.json"))
        prompts = [{"text": t, "ids": tok.encode(t).ids} for t in TEXTS]
    write_json(os.path.join(path, "reference.json"), reference(load_fp32(cls, path), prompts, per_prefix))
    print(name, sorted(os.listdir(path)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="the fixtures directory (holding tokenizers/)")
    args = ap.parse_args()
    out = args.out
    common = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, rms_norm_eps=1e-5)

    build(out, "llama-tiny", LlamaForCausalLM, LlamaConfig(
        vocab_size=951, num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, **common), torch.bfloat16, "llama2-style", 20)

    build(out, "llama3-tiny", LlamaForCausalLM, LlamaConfig(
        vocab_size=831, num_key_value_heads=1, head_dim=24, max_position_embeddings=512, tie_word_embeddings=True,
        rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        bos_token_id=826, eos_token_id=[827, 830], **common), torch.float16, "llama3-style", 21)

    build(out, "mistral-tiny", MistralForCausalLM, MistralConfig(
        vocab_size=951, num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0, sliding_window=12,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, **common), torch.float32, "llama2-style", 22)

    build(out, "qwen2-tiny", Qwen2ForCausalLM, Qwen2Config(
        vocab_size=815, num_key_value_heads=2, max_position_embeddings=256, rope_theta=1000000.0, tie_word_embeddings=True,
        use_sliding_window=False, bos_token_id=None, eos_token_id=814, **common), torch.bfloat16, "qwen2-style", 23)

    build(out, "qwen3-tiny", Qwen3ForCausalLM, Qwen3Config(
        vocab_size=815, num_key_value_heads=2, head_dim=32, max_position_embeddings=256, rope_theta=1000000.0,
        tie_word_embeddings=False, attention_bias=False, bos_token_id=None, eos_token_id=814, **common),
        torch.float32, "qwen2-style", 24)

    g = torch.Generator().manual_seed(5)
    long_prompts = [{"ids": torch.randint(3, 951, (n,), generator=g).tolist()} for n in (5, 30, 40)]
    scalings = {
        "linear": {"rope_type": "linear", "factor": 2.5},
        "dynamic": {"rope_type": "dynamic", "factor": 3.0},
        "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 24, "beta_fast": 8.0, "beta_slow": 1.0},
    }
    for i, (kind, scaling) in enumerate(scalings.items()):
        # dynamic scaling engages beyond max_position_embeddings, which Peregrine extends by the factor (as vLLM does)
        build(out, f"llama-rope-{kind}", LlamaForCausalLM, LlamaConfig(
            vocab_size=951, num_key_value_heads=2, max_position_embeddings=24 if kind == "dynamic" else 96, rope_theta=10000.0, rope_scaling=scaling,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, **common), torch.float32, "llama2-style", 30 + i,
            prompts=long_prompts, per_prefix=kind == "dynamic")


if __name__ == "__main__":
    main()
