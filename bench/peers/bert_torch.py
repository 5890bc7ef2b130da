"""BERT encoders in PyTorch for bench/bert.ts: Hugging Face transformers' BertModel (SDPA attention) on padded
batches, eager and under torch.compile, each followed by a masked mean over the tokens (what an embedding costs).

  python3 bench/peers/bert_torch.py --spec inputs.json --dtype f16 --reps 20 --out results.json

inputs.json (written by bench/bert.ts): {"configs": {name: {hidden, layers, heads, inner}}, "inputs": {label:
[lengths]}, "vocab": V, "positions": P}. Random weights and ids; wall time per batch (synchronized), median of reps
after 3 warm-ups.
"""
import argparse
import json
import time

import torch
from transformers import BertConfig, BertModel


def pooled(model, ids, mask):
    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1)


def time_it(f, reps):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[reps // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spec", required=True)
    p.add_argument("--dtype", default="f16")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    spec = json.load(open(a.spec))
    dtype = torch.float16 if a.dtype == "f16" else torch.bfloat16
    results = []
    for name, c in spec["configs"].items():
        cfg = BertConfig(vocab_size=spec["vocab"], hidden_size=c["hidden"], num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                         intermediate_size=c["inner"], max_position_embeddings=spec["positions"], attn_implementation="sdpa")
        model = BertModel(cfg, add_pooling_layer=False).to("cuda", dtype).eval()
        compiled = torch.compile(model)
        for label, lengths in spec["inputs"].items():
            B, S = len(lengths), max(lengths)
            ids = torch.randint(1000, 29000, (B, S), device="cuda")
            mask = (torch.arange(S, device="cuda")[None, :] < torch.tensor(lengths, device="cuda")[:, None]).long()
            for engine, m in (("hf-sdpa (padded)", model), ("torch.compile (padded)", compiled)):
                row = {"engine": engine, "config": name, "input": label, "tokens": sum(lengths), "ms": None, "error": None}
                try:
                    with torch.inference_mode():
                        row["ms"] = time_it(lambda: pooled(m, ids, mask), a.reps)
                except Exception as e:  # said in the table rather than ending the run
                    row["error"] = str(e).splitlines()[0][:160]
                results.append(row)
        del model, compiled
        torch.cuda.empty_cache()
    json.dump({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "results": results}, open(a.out, "w"))


if __name__ == "__main__":
    main()
