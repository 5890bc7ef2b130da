"""Builds small random-weight AWQ and GPTQ int4 checkpoints and their Hugging Face reference outputs (test/fixtures).

The linear layers of the transformer blocks are quantized round-to-nearest in groups (the numbers do not matter; the
storage does) and packed exactly as the formats store them: GPTQ as AutoGPTQ's QuantLinear.pack (qweight [in / 8, out]
with inputs 8r .. 8r + 7 in word r, qzeros [groups, out / 8], scales [groups, out] f16, g_idx [in]; zeros stored minus
one in checkpoint_format "gptq"), AWQ as AutoAWQ's WQLinear_GEMM.from_linear (qweight [in, out / 8], outputs in the
order 0 2 4 6 1 3 5 7 within a word). The reference model is the same architecture in fp32 with each layer's weight
dequantized from the packed tensors as the formats' own unpacking does (scale[g_idx[k]] * (q - zero)), so a loader
that reads the packing wrongly cannot match it. Runs where torch, safetensors and transformers are installed:

    python3 tools/reference/make_int4_fixtures.py --out test/fixtures

- llama-awq-tiny:   LlamaForCausalLM, AWQ GEMM, group 64, untied head.
- llama-gptq-tiny:  LlamaForCausalLM, GPTQ with act-order (desc_act: q/k/v share one input order, gate/up another,
                    o and down their own), group 32, checkpoint_format "gptq" (zeros minus one), asymmetric.
- gpt2-gptq-tiny:   GPT2LMHeadModel (Conv1D layers, transposed as GPTQ packs them), GPTQ group 64, symmetric,
                    checkpoint_format "gptq_v2" (zeros as they are), biases.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.pytorch_utils import Conv1D

from make_fixtures import gpt2_reference, link_tokenizer, randomize, round_to, write_json
from make_llama_fixtures import TEXTS, randomize as randomize_llama, reference as llama_reference

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def quantize(W, g, order, sym):
    """Round-to-nearest int4 of W [out, in] in groups of g consecutive inputs of `order` (the stored order).
    Returns q [out, in] (layer order), scale [in / g, out] (f16 values), zero [in / g, out] (ints) and g_idx [in]."""
    N, K = W.shape
    Ws = W[:, order].reshape(N, K // g, g)
    if sym:
        scale = (Ws.abs().amax(-1) / 7).clamp(min=1e-6)
        zero = torch.full_like(scale, 8)
    else:
        lo, hi = Ws.amin(-1).clamp(max=0), Ws.amax(-1).clamp(min=0)
        scale = ((hi - lo) / 15).clamp(min=1e-6)
        zero = torch.round(-lo / scale.half().float()).clamp(0, 15)
    scale = scale.half().float()
    qs = torch.clamp(torch.round(Ws / scale[..., None]) + zero[..., None], 0, 15).reshape(N, K).to(torch.int64)
    q = torch.empty_like(qs)
    q[:, order] = qs
    g_idx = torch.empty(K, dtype=torch.int64)
    g_idx[order] = torch.arange(K) // g
    return q, scale.t().contiguous(), zero.t().to(torch.int64).contiguous(), g_idx


def pack_rows(v):
    """[R * 8, C] nibbles -> [R, C] int32, row 8r + i in bits 4i of row r (GPTQ's qweight)."""
    v = v.reshape(-1, 8, v.shape[1])
    out = torch.zeros(v.shape[0], v.shape[2], dtype=torch.int64)
    for i in range(8):
        out |= (v[:, i] & 15) << (4 * i)
    return to_int32(out)


def pack_cols(v, order):
    """[R, C * 8] nibbles -> [R, C] int32, column 8c + order[i] in bits 4i of column c."""
    v = v.reshape(v.shape[0], -1, 8)
    out = torch.zeros(v.shape[0], v.shape[1], dtype=torch.int64)
    for i in range(8):
        out |= (v[:, :, order[i]] & 15) << (4 * i)
    return to_int32(out)


def to_int32(u):
    return torch.where(u >= 2**31, u - 2**32, u).to(torch.int32)


def nibbles(words, axis):
    """The inverse of the packers, as the formats unpack: [R, C] int32 -> 8 nibbles per word along `axis`."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    parts = [(w >> (4 * i)) & 15 for i in range(8)]
    return torch.stack(parts, dim=axis + 1).flatten(axis, axis + 1)


def pack(method, q, scale, zero, g_idx, v1):
    """The tensors of one layer as the format stores them, and the weight [out, in] its unpacking gives."""
    if method == "gptq":
        t = {"qweight": pack_rows(q.t().contiguous()), "qzeros": pack_cols(zero - (1 if v1 else 0), list(range(8))),
             "scales": scale.half(), "g_idx": g_idx.to(torch.int32)}
        wq = nibbles(t["qweight"], 0)  # [in, out]
        z = nibbles(t["qzeros"], 1) + (1 if v1 else 0)  # [groups, out]
        gi = t["g_idx"].long()
        W = (t["scales"].float()[gi] * (wq - z[gi]).float()).t()
    else:
        t = {"qweight": pack_cols(q.t().contiguous(), AWQ_ORDER), "qzeros": pack_cols(zero, AWQ_ORDER), "scales": scale.half()}
        inverse = [AWQ_ORDER.index(i) for i in range(8)]
        unorder = lambda x: x.reshape(x.shape[0], -1, 8)[:, :, inverse].flatten(1)  # noqa: E731
        wq = unorder(nibbles(t["qweight"], 1))  # [in, out]
        z = unorder(nibbles(t["qzeros"], 1))
        gi = torch.arange(wq.shape[0]) // (wq.shape[0] // z.shape[0])
        W = (t["scales"].float()[gi] * (wq - z[gi]).float()).t()
    return t, W.contiguous()


def quantize_model(model, method, g, sym, v1, orders):
    """Replaces each block linear's weight by its dequantized int4 value; returns the stored tensors by name."""
    stored = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if not isinstance(mod, (torch.nn.Linear, Conv1D)) or "lm_head" in name:
                continue
            W = mod.weight.t() if isinstance(mod, Conv1D) else mod.weight  # [out, in]
            q, scale, zero, g_idx = quantize(W.float(), g, orders(name, W.shape[1]), sym)
            tensors, Wd = pack(method, q, scale, zero, g_idx, v1)
            mod.weight.copy_(Wd.t() if isinstance(mod, Conv1D) else Wd)
            for k, v in tensors.items():
                stored[f"{name}.{k}"] = v.contiguous()
    return stored


def save_quantized(model, stored, path, qconfig):
    os.makedirs(path, exist_ok=True)
    prefixes = {k.rsplit(".", 1)[0] for k in stored}
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()
             if not (k.endswith(".weight") and k[: -len(".weight")] in prefixes) and not k.endswith((".attn.bias", ".attn.masked_bias"))}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file({**state, **stored}, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg["architectures"] = [type(model).__name__]
    cfg["quantization_config"] = qconfig
    cfg["torch_dtype"] = "float16"
    cfg.pop("dtype", None)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def act_order(seed):
    """GPTQ's act-order: a random input order per layer input, shared by the layers that read the same input."""
    g = torch.Generator().manual_seed(seed)
    cache = {}

    def order(name, K):
        key = name.rsplit(".", 1)[0] + ("qkv" if any(p in name for p in ("q_proj", "k_proj", "v_proj")) else
                                        "gate_up" if any(p in name for p in ("gate_proj", "up_proj")) else name)
        if key not in cache:
            cache[key] = torch.randperm(K, generator=g)
        return cache[key]
    return order


def in_order(name, K):
    return torch.arange(K)


def llama(out, name, method, g, sym, v1, orders, seed):
    cfg = LlamaConfig(vocab_size=951, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    randomize_llama(model, seed)
    round_to(model, torch.float16)
    stored = quantize_model(model, method, g, sym, v1, orders)
    path = os.path.join(out, name)
    qconfig = {"quant_method": method, "bits": 4, "group_size": g}
    if method == "awq":
        qconfig.update(zero_point=True, version="gemm", modules_to_not_convert=None)
    else:
        qconfig.update(desc_act=orders is not in_order, sym=sym, checkpoint_format="gptq" if v1 else "gptq_v2", true_sequential=True)
    save_quantized(model, stored, path, qconfig)
    link_tokenizer(path, "llama2-style", os.path.join(out, "tokenizers"))
    tok = Tokenizer.from_file(os.path.join(out, "tokenizers", "llama2-style", "tokenizer.json"))
    prompts = [{"text": t, "ids": tok.encode(t).ids} for t in TEXTS]
    model.config._attn_implementation = "eager"
    write_json(os.path.join(path, "reference.json"), llama_reference(model.float(), prompts, False))
    print(name, sorted(os.listdir(path)))


def gpt2(out, name, g, seed):
    cfg = GPT2Config(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=0, eos_token_id=511)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).eval()
    randomize(model, seed)
    round_to(model, torch.float16)
    stored = quantize_model(model, "gptq", g, True, False, in_order)
    path = os.path.join(out, name)
    save_quantized(model, stored, path, {"quant_method": "gptq", "bits": 4, "group_size": g, "desc_act": False, "sym": True,
                                         "checkpoint_format": "gptq_v2"})
    link_tokenizer(path, "gpt2", os.path.join(out, "tokenizers"))
    gen = torch.Generator().manual_seed(seed)
    prompts = [{"ids": torch.randint(0, 512, (n,), generator=gen).tolist()} for n in (1, 7, 20, 45)]
    model.config._attn_implementation = "eager"
    write_json(os.path.join(path, "reference.json"), gpt2_reference(model.float(), prompts, True))
    print(name, sorted(os.listdir(path)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="the fixtures directory (holding tokenizers/)")
    args = ap.parse_args()
    llama(args.out, "llama-awq-tiny", "awq", 64, False, False, in_order, 40)
    llama(args.out, "llama-gptq-tiny", "gptq", 32, False, True, act_order(41), 41)
    gpt2(args.out, "gpt2-gptq-tiny", 64, 42)


if __name__ == "__main__":
    main()
