#!/usr/bin/env python3
"""Peer benchmark: Hugging Face transformers beam search (generate(num_beams=N)) for GPT-2 on one CUDA GPU.

A randomly initialised GPT-2 (no download) in fp16 with transformers' default attention, --batch prompts of
--prompt random token ids (the ids Peregrine's bench uses: (b * 7919 + i * 104729) % 50257), beam search
with --beams beams, exactly --new new tokens (min_new_tokens = max_new_tokens, so no beam ends early).
Timing: CUDA-synchronised wall time of the whole generate() call, median of --reps after one warm-up.

Run: python3 bench/peers/beam_hf.py --config 1.5B --batch 8 --beams 4 --prompt 128 --new 128 --out FILE.json
"""
import argparse, json, statistics, sys, time

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

CONFIGS = {"124M": dict(n_embd=768, n_layer=12, n_head=12), "1.5B": dict(n_embd=1600, n_layer=48, n_head=25)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="1.5B")
    for opt, default in (("batch", 8), ("beams", 4), ("prompt", 128), ("new", 128), ("reps", 3)):
        ap.add_argument("--" + opt, type=int, default=default)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = GPT2Config(vocab_size=50257, n_positions=1024, **CONFIGS[a.config])
    with torch.device("cuda"), torch.no_grad():
        model = GPT2LMHeadModel(cfg).to(torch.float16).eval()
    ids = torch.tensor([[(b * 7919 + i * 104729) % 50257 for i in range(a.prompt)] for b in range(a.batch)], device="cuda")

    def run():
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=a.beams, max_new_tokens=a.new,
                                  min_new_tokens=a.new, do_sample=False, early_stopping=False, pad_token_id=50256)

    run()
    times = []
    for _ in range(a.reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = run()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    res = dict(engine="hf-generate", config=a.config, batch=a.batch, beams=a.beams, prompt=a.prompt, new=a.new, ms=ms,
               ms_per_step=ms / a.new, tokens_per_s=a.batch * a.new * 1000 / ms, generated=int(out.shape[1] - a.prompt),
               device=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__, times=times)
    print(json.dumps(res), file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
