"""Builds small checkpoints whose config fields change the computation, and Hugging Face reference outputs
for each (test/fixtures/config-variants/<name>/), in the format of make_fixtures.py.

Runs where torch and transformers are installed (the GPU machine), on the CPU in fp32. Usage, from the
repository root:

    python3 tools/reference/make_config_fixtures.py --out test/fixtures/config-variants --tokenizers test/fixtures/tokenizers

GPT-2 variants (GPT2LMHeadModel, vocab 64, n_embd 16, 2 heads of 8, 3 layers so that layer-wise scales
differ, n_inner 48, 64 positions, fp16 weights, full logits of three prompts and 32 greedy tokens each):
the unmodified model (gelu_new), scale_attn_weights false, scale_attn_by_inverse_layer_idx,
reorder_and_upcast_attn (with the layer-wise scale), layer_norm_epsilon 0.1, and activation_function gelu,
gelu_fast, gelu_pytorch_tanh, quick_gelu, relu, silu, tanh. BERT variants (BertModel, vocab 64, hidden 16,
2 layers, intermediate 48, fp16 weights, last hidden states and pooled vectors): the unmodified model (gelu),
layer_norm_eps 0.1, and hidden_act gelu_new, relu, silu, quick_gelu.

Every checkpoint uses the same weights as its family's unmodified one, and the script checks that each
variant's outputs differ from the unmodified model's where the field changes the computation (and agree where
it names the same function): a field that the installed transformers ignores stops the script.
"""
import argparse
import os
import shutil
import sys

import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel
from transformers.activations import ACT2FN

sys.dont_write_bytecode = True  # importing make_fixtures leaves no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import bert_reference, gpt2_reference, link_tokenizer, load_fp32, randomize, round_to, save, write_json  # noqa: E402

# name, config changes, whether the outputs must differ from the unmodified model's
GPT2_VARIANTS = [
    ("gpt2-base", {}, False),
    ("gpt2-no-scale-attn-weights", {"scale_attn_weights": False}, True),
    ("gpt2-scale-attn-by-inverse-layer-idx", {"scale_attn_by_inverse_layer_idx": True}, True),
    ("gpt2-reorder-and-upcast-attn", {"reorder_and_upcast_attn": True, "scale_attn_by_inverse_layer_idx": True}, True),
    ("gpt2-layer-norm-epsilon", {"layer_norm_epsilon": 0.1}, True),
    ("gpt2-act-gelu", {"activation_function": "gelu"}, True),
    ("gpt2-act-gelu-fast", {"activation_function": "gelu_fast"}, False),
    ("gpt2-act-gelu-pytorch-tanh", {"activation_function": "gelu_pytorch_tanh"}, False),
    ("gpt2-act-quick-gelu", {"activation_function": "quick_gelu"}, True),
    ("gpt2-act-relu", {"activation_function": "relu"}, True),
    ("gpt2-act-silu", {"activation_function": "silu"}, True),
    ("gpt2-act-tanh", {"activation_function": "tanh"}, True),
]
BERT_VARIANTS = [
    ("bert-base", {}, False),
    ("bert-layer-norm-eps", {"layer_norm_eps": 0.1}, True),
    ("bert-act-gelu-new", {"hidden_act": "gelu_new"}, True),
    ("bert-act-relu", {"hidden_act": "relu"}, True),
    ("bert-act-silu", {"hidden_act": "silu"}, True),
    ("bert-act-quick-gelu", {"hidden_act": "quick_gelu"}, True),
]
# the tanh-approximation names compute the same function as gelu_new up to float rounding
SAME_TOL = 1e-5
# a field that matters moves the outputs by more than this, relative to their largest magnitude (an ignored
# field moves them by nothing; gelu against its tanh form moves them by about 2e-4)
DIFFER_TOL = 3e-5


def sharpen_attention(model, names, gain):
    """Larger query/key weights: attention scores of order several units, so that their scale shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and any(n in name for n in names):
                p.mul_(gain)


def relative_change(a, b):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_variant(name, outputs, base, differs):
    if base is None:
        return
    change = relative_change(outputs, base)
    if differs and change <= DIFFER_TOL:
        sys.exit(f"{name}: the outputs equal the unmodified model's (change {change:.2e}); this transformers version ignores the field")
    if not differs and change > SAME_TOL:
        sys.exit(f"{name}: the outputs differ from the unmodified model's by {change:.2e}; expected the same function")
    print(f"{name}: relative change from the unmodified model {change:.2e}")


def flat_logits(ref):
    return [x for f in ref["forward"] for row in f["logits"] for x in row]


def flat_hidden(ref):
    return [x for h in ref["hidden"] for row in h for x in row]


def usable(changes):
    act = changes.get("activation_function", changes.get("hidden_act"))
    if act is not None and act not in ACT2FN:
        print(f"skipping {act}: not in this transformers version's ACT2FN")
        return False
    return True


def write_variants(out, tokenizers, variants, make_model, seed, sharpen, tokenizer, reference, flat):
    """One fixture per variant: the same random weights (seed) under each config change, saved in fp16 with
    its reference outputs; each is checked to differ, or not, from the first variant's as `differs` says."""
    base = None
    for name, changes, differs in variants:
        if not usable(changes):
            continue
        model = make_model(changes)
        randomize(model, seed)
        sharpen_attention(model, *sharpen)
        round_to(model, torch.float16)
        path = os.path.join(out, name)
        shutil.rmtree(path, ignore_errors=True)
        save(model, path, torch.float16)
        link_tokenizer(path, tokenizer, tokenizers)
        ref = reference(path)
        write_json(os.path.join(path, "reference.json"), ref)
        check_variant(name, flat(ref), base, differs)
        if base is None:
            base = flat(ref)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizers", required=True, help="directory holding gpt2/ and bert-base-uncased/ tokenizer files")
    args = ap.parse_args()
    out, tokenizers = os.path.abspath(args.out), os.path.abspath(args.tokenizers)
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(21)
    gpt2_prompts = [{"ids": torch.randint(0, 64, (n,), generator=g).tolist()} for n in (1, 6, 11)]
    bert_inputs = [{"ids": [1] + torch.randint(3, 64, (n,), generator=g).tolist() + [2]} for n in (0, 5, 17)]

    def gpt2_model(changes):
        return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=3, n_head=2, n_inner=48, n_positions=64,
                                          bos_token_id=0, eos_token_id=63, **changes))

    def bert_model(changes):
        return BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=48, max_position_embeddings=64, **changes))

    write_variants(out, tokenizers, GPT2_VARIANTS, gpt2_model, seed=31, sharpen=(["c_attn"], 2.0), tokenizer="gpt2",
                   reference=lambda path: gpt2_reference(load_fp32(GPT2LMHeadModel, path), gpt2_prompts, True), flat=flat_logits)
    write_variants(out, tokenizers, BERT_VARIANTS, bert_model, seed=32,
                   sharpen=(["attention.self.query", "attention.self.key"], 1.5), tokenizer="bert-base-uncased",
                   reference=lambda path: bert_reference(load_fp32(BertModel, path), bert_inputs, False), flat=flat_hidden)

    total = 0
    for name in sorted(os.listdir(out)):
        d = os.path.join(out, name)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if not os.path.islink(os.path.join(d, f)))
        total += size
        print(f"{name}: {size // 1024} KiB")
    print(f"total {total // 1024} KiB in {out}")


if __name__ == "__main__":
    main()
