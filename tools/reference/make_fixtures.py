"""Builds small random-weight Hugging Face checkpoints and their reference outputs (test/fixtures).

Runs where torch and transformers are installed (the GPU machine); everything runs on the CPU in fp32 so
the references do not depend on the GPU. Usage, from the repository root:

    python3 tools/reference/make_fixtures.py --out /tmp/fixtures --tokenizers test/fixtures/tokenizers

Each checkpoint directory gets config.json, safetensors weights, symlinks to the real tokenizer files in
../tokenizers/<name>/, and reference.json with what Hugging Face transformers computes:

- gpt2-tiny:  GPT2LMHeadModel over the real GPT-2 tokenizer (vocab 50257, n_embd 8), fp16 weights in two
              shards with model.safetensors.index.json, LM head tied to wte. Logits are stored for a
              strided subset of the vocabulary plus each position's logsumexp and argmax (full rows would
              not fit the fixture budget).
- gpt2-wide:  GPT2LMHeadModel with vocab 512, n_embd 64, fp32 weights, full logits.
- bert-tiny:  BertForSequenceClassification over the real bert-base-uncased tokenizer, bf16 weights
              ("bert." prefix), 3 labels.
- bert-wide:  BertModel with vocab 512, hidden 48, fp16 weights (no prefix).
"""
import argparse
import json
import math
import os

import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertForSequenceClassification, BertModel, GPT2Config, GPT2LMHeadModel

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café, 日本語 and emoji 🙂 too",
    "a",
]
STEPS = 32
LOGIT_STRIDE = 251


def r(x, digits=8):
    """Floats with 8 significant digits (or `digits`), enough for 1e-6 relative comparisons."""
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if isinstance(x, list):
        return [r(v, digits) for v in x]
    return float("%.*g" % (digits, x))


def randomize_by(model, seed, is_norm, is_embedding):
    """Norm gains (where is_norm(name)) near 1, non-zero biases, embeddings (is_embedding(name)) of 0.5, other
    matrices scaled by fan-in [out, in], so that activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if is_norm(name):
                p.copy_(1 + 0.2 * n)
            elif name.endswith("bias"):
                p.copy_(0.1 * n)
            elif is_embedding(name):
                p.copy_(0.5 * n)
            else:
                p.copy_(n / math.sqrt(p.shape[-1]))


def randomize(model, seed, emb_std=0.5):
    """Weights with clear structure: LayerNorm gains near 1 and biases non-zero, so that swapped or
    missing parameters show up; matrices scaled by fan-in so activations stay O(1); embeddings large
    enough that greedy argmax has clear winners."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if ("ln_" in name or "LayerNorm" in name) and name.endswith("weight"):
                p.copy_(1 + 0.2 * n)
            elif name.endswith("bias"):
                p.copy_(0.1 * n)
            elif "wte" in name or "wpe" in name or "embeddings" in name:
                p.copy_(emb_std * n)
            else:
                fan_in = p.shape[0] if "transformer.h." in name else p.shape[-1]  # GPT-2 Conv1D is [in, out]
                p.copy_(n / math.sqrt(fan_in))


def round_to(model, dtype):
    """Makes the fp32 weights exactly representable in the storage dtype."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


def link_tokenizer(dirpath, name, tokenizers=None):
    """Symlinks the real tokenizer files of `name` under `tokenizers` (default: the fixtures' tokenizers/ beside
    dirpath), relative to the checkpoint directory (so the tree can move)."""
    tokenizers = tokenizers or os.path.join(os.path.dirname(dirpath), "tokenizers")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        dst = os.path.join(dirpath, f)
        if os.path.lexists(dst):
            os.remove(dst)
        os.symlink(os.path.relpath(os.path.join(tokenizers, name, f), dirpath), dst)


def load_fp32(cls, path):
    try:
        model = cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        model = cls.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def save(model, path, dtype, shard=None):
    os.makedirs(path, exist_ok=True)
    kwargs = {"safe_serialization": True}
    if shard:
        kwargs["max_shard_size"] = shard
    model.to(dtype).save_pretrained(path, **kwargs)
    model.to(torch.float32)


def gpt2_reference(model, prompts, full_logits):
    vocab = model.config.vocab_size
    out = {"kind": "causal-lm", "prompts": [], "forward": [], "greedy": []}
    sub = list(range(0, vocab, LOGIT_STRIDE))
    for p in prompts:
        ids = torch.tensor([p["ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].double()  # [seq, vocab]
        entry = {
            "ids": p["ids"],
            "logsumexp": r(torch.logsumexp(logits, dim=-1)),
            "argmax": logits.argmax(dim=-1).tolist(),
        }
        if full_logits:
            entry["logits"] = r(logits)
        else:
            entry["indices"] = sub
            entry["logits"] = r(logits[:, sub])
        out["forward"].append(entry)
        out["prompts"].append(p)
        out["greedy"].append({"ids": p["ids"], "generated": greedy(model, p["ids"])})
    return out


def greedy(model, ids):
    """32 greedy steps with the KV cache, never stopping at end-of-sequence."""
    generated = []
    with torch.no_grad():
        o = model(input_ids=torch.tensor([ids]), use_cache=True)
        for _ in range(STEPS):
            tok = int(o.logits[0, -1].argmax())
            generated.append(tok)
            o = model(input_ids=torch.tensor([[tok]]), past_key_values=o.past_key_values, use_cache=True)
    return generated


def bert_reference(model, inputs, classify):
    lengths = [len(x["ids"]) for x in inputs]
    T = max(lengths)
    ids = torch.zeros(len(inputs), T, dtype=torch.long)
    mask = torch.zeros(len(inputs), T, dtype=torch.long)
    for i, x in enumerate(inputs):
        ids[i, : len(x["ids"])] = torch.tensor(x["ids"])
        mask[i, : len(x["ids"])] = 1
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), output_hidden_states=True)
    hidden = o.hidden_states[-1]  # [batch, T, H]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    cls = hidden[:, 0]
    mean = (hidden * m).sum(1) / m.sum(1)
    out = {
        "kind": "encoder",
        "inputs": inputs,
        "hidden": [r(hidden[i, : lengths[i]]) for i in range(len(inputs))],
        "cls": r(cls),
        "mean": r(mean),
        "cls_normalized": r(torch.nn.functional.normalize(cls, dim=-1)),
        "mean_normalized": r(torch.nn.functional.normalize(mean, dim=-1)),
    }
    if classify:
        out["logits"] = r(o.logits)
    return out


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizers", required=True, help="directory holding gpt2/ and bert-base-uncased/ tokenizer files")
    args = ap.parse_args()
    torch.manual_seed(0)
    gpt2_tok = Tokenizer.from_file(os.path.join(args.tokenizers, "gpt2", "tokenizer.json"))
    bert_tok = Tokenizer.from_file(os.path.join(args.tokenizers, "bert-base-uncased", "tokenizer.json"))
    g = torch.Generator().manual_seed(1)

    # gpt2-tiny: real tokenizer, fp16, sharded, tied head
    cfg = GPT2Config(vocab_size=50257, n_embd=8, n_layer=3, n_head=2, n_positions=64, bos_token_id=50256, eos_token_id=50256)
    model = GPT2LMHeadModel(cfg)
    randomize(model, 10)
    round_to(model, torch.float16)
    path = os.path.join(args.out, "gpt2-tiny")
    save(model, path, torch.float16, shard="400KB")
    link_tokenizer(path, "gpt2")
    prompts = [{"text": t, "ids": gpt2_tok.encode(t).ids} for t in TEXTS]
    write_json(os.path.join(path, "reference.json"), gpt2_reference(load_fp32(GPT2LMHeadModel, path), prompts, False))

    # gpt2-wide: small vocabulary, wider layers, fp32, full logits
    cfg = GPT2Config(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=0, eos_token_id=511)
    model = GPT2LMHeadModel(cfg)
    randomize(model, 11)
    path = os.path.join(args.out, "gpt2-wide")
    save(model, path, torch.float32)
    link_tokenizer(path, "gpt2")
    prompts = [{"ids": torch.randint(0, 512, (n,), generator=g).tolist()} for n in (1, 7, 20, 45)]
    write_json(os.path.join(path, "reference.json"), gpt2_reference(load_fp32(GPT2LMHeadModel, path), prompts, True))

    # bert-tiny: real tokenizer, bf16, sequence classification with the "bert." prefix
    cfg = BertConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=64, num_labels=3)
    model = BertForSequenceClassification(cfg)
    randomize(model, 12)
    round_to(model, torch.bfloat16)
    path = os.path.join(args.out, "bert-tiny")
    save(model, path, torch.bfloat16)
    link_tokenizer(path, "bert-base-uncased")
    inputs = [{"text": t, "ids": bert_tok.encode(t).ids} for t in TEXTS]
    write_json(os.path.join(path, "reference.json"), bert_reference(load_fp32(BertForSequenceClassification, path), inputs, True))

    # bert-wide: BertModel names, fp16, hidden 48 (not a power of two), odd lengths
    cfg = BertConfig(vocab_size=512, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=160,
                     max_position_embeddings=128)
    model = BertModel(cfg)
    randomize(model, 13)
    round_to(model, torch.float16)
    path = os.path.join(args.out, "bert-wide")
    save(model, path, torch.float16)
    link_tokenizer(path, "bert-base-uncased")
    inputs = [{"ids": [101] + torch.randint(103, 512, (n,), generator=g).tolist() + [102]} for n in (0, 5, 33, 90)]
    write_json(os.path.join(path, "reference.json"), bert_reference(load_fp32(BertModel, path), inputs, False))

    for name in sorted(os.listdir(args.out)):
        files = sorted(os.listdir(os.path.join(args.out, name)))
        print(name, files)


if __name__ == "__main__":
    main()
