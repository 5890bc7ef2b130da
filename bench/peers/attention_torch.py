"""PyTorch's fused prompt attention for bench/kernels/flash.ts: torch.nn.functional.scaled_dot_product_attention with the
flash backend only, on [batch, heads, seq, head size] tensors, timed by CUDA events (mean of 10 after a warm-up).

  python3 bench/peers/attention_torch.py --cases 64:2048:0,128:2048:1 --tokens 16384 --hidden 2048 --dtype f16 --out r.json

A case is head size:seq:causal; batch = tokens // seq, heads = hidden // head size, FLOPs = 4 seq^2 hidden batch (/ 2
causal), as bench/kernels/flash.ts counts them.
"""
import argparse
import json

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def run_case(D, seq, causal, tokens, hidden, dtype):
    batch, heads = max(1, tokens // seq), hidden // D
    q, k, v = (torch.randn(batch, heads, seq, D, device="cuda", dtype=dtype) for _ in range(3))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        f = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        f()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            f()
        end.record()
        torch.cuda.synchronize()
    ms = start.elapsed_time(end) / 10
    flops = 4 * batch * seq * seq * hidden / (2 if causal else 1)
    return {"engine": "torch sdpa (flash)", "D": D, "seq": seq, "batch": batch, "causal": causal, "ms": ms, "tflops": flops / ms / 1e9}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cases", required=True)
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--dtype", default="f16")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    dtype = torch.float16 if a.dtype == "f16" else torch.bfloat16
    results = []
    for c in a.cases.split(","):
        D, seq, causal = (int(x) for x in c.split(":"))
        try:
            results.append(run_case(D, seq, causal == 1, a.tokens, a.hidden, dtype))
        except Exception as e:  # a head size the flash backend lacks: said in the table
            results.append({"engine": "torch sdpa (flash)", "D": D, "seq": seq, "batch": a.tokens // seq, "causal": causal == 1, "ms": 0, "tflops": 0, "error": str(e).splitlines()[0][:120]})
    with open(a.out, "w") as f:
        json.dump({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "results": results}, f)


if __name__ == "__main__":
    main()
