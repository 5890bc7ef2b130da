#!/usr/bin/env python3
"""Peer benchmark: Llama greedy generation with PyTorch / Hugging Face transformers on one CUDA GPU, bf16.

Randomly initialised LlamaForCausalLM (no download) in the configurations of bench/llama.ts:
  1B = Llama-3.2-1B (hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192, vocab 128256, tied head)
  8B = Llama-3-8B   (hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336, vocab 128256)
generate() with a static KV cache, which transformers compiles itself (its CompileConfig: torch.compile with
CUDA graphs; compiling the forward by hand as well fails with overwritten CUDA-graph outputs),
greedy, exactly --new tokens. Timing: CUDA-synchronised wall time, median of 3 after 2 warm-up generations:
  prefill_ms = t(1 new token); decode_ms_per_step = (t(new) - t(1)) / (new - 1); tokens_per_s = batch * 1000 / that.

Run: python3 bench/peers/llama_torch.py --configs 1B,8B --batches 1,64 [--prompt 128] [--new 128] --out FILE.json
"""
import argparse, gc, json, statistics, sys, time, traceback

import torch
from transformers import LlamaConfig, LlamaForCausalLM

CONFIGS = {
    "1B": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, intermediate_size=8192, tie_word_embeddings=True),
    "8B": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336, tie_word_embeddings=False),
}


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="1B,8B")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    results = []
    for name in a.configs.split(","):
        cfg = LlamaConfig(vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5, **CONFIGS[name])
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
        model.generation_config.cache_implementation = "static"
        for batch in map(int, a.batches.split(",")):
            row = {"config": name, "batch": batch, "prefill_ms": None, "decode_ms_per_step": None, "tokens_per_s": None, "error": None}
            try:
                ids = torch.randint(0, 128000, (batch, a.prompt), device="cuda")
                gen = lambda n: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
                for _ in range(2):
                    gen(a.new)
                one = statistics.median(timed(lambda: gen(1)) for _ in range(3))
                full = statistics.median(timed(lambda: gen(a.new)) for _ in range(3))
                step = (full - one) / (a.new - 1)
                row.update(prefill_ms=one, decode_ms_per_step=step, tokens_per_s=batch * 1000 / step)
            except Exception as e:  # noqa: BLE001 - reported in the table
                traceback.print_exc()
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            print(f"[llama_torch] {row}", file=sys.stderr, flush=True)
            results.append(row)
            with open(a.out, "w") as f:
                json.dump({"results": results}, f)
        del model
        gc.collect()
        torch.cuda.empty_cache()
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
