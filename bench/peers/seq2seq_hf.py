#!/usr/bin/env python3
"""Peer benchmark: Hugging Face transformers beam search (generate(num_beams=N)) for encoder-decoder models on one GPU.

Randomly initialised models (no download) in the configurations of bench/seq2seq.ts:
  marian     = Helsinki-NLP/opus-mt-en-de's shape: MarianMTModel, 6+6 layers, d_model 512, 8 heads, FFN 2048,
               vocab 32000, sinusoidal positions, swish, scale_embedding, tied head
  bart-large = facebook/bart-large's shape: BartForConditionalGeneration, 12+12 layers, d_model 1024, 16 heads,
               FFN 4096, vocab 50265, learned positions, gelu
  marian-tiny, bart-tiny: d_model 64, 2+2 layers, for trying the script out on the CPU (--device cpu)
fp16 on CUDA (f32 on the CPU), default attention. For each batch: the sources of bench/seq2seq.ts (lengths in
[--min-source, --max-source], ids from the same seeded 32-bit LCG), right-padded with an attention mask; beam
search with --beams beams and exactly --new new tokens (min_new_tokens = max_new_tokens, early_stopping=False,
a GenerationConfig of its own: no forced end token, no bad words, no n-gram ban).
Timing: CUDA-synchronised wall time of the whole generate() call, median of --reps after one warm-up of 8 new tokens.

Run: python3 bench/peers/seq2seq_hf.py --configs marian,bart-large --batches 1,32,128 [--beams 4] [--new 64] --out FILE.json
"""
import argparse, gc, json, statistics, sys, time, traceback

import torch
import transformers
from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig, MarianConfig, MarianMTModel

CONFIGS = {
    "marian": dict(variant="marian", hidden=512, layers=6, heads=8, inner=2048, vocab=32000, positions=512),
    "bart-large": dict(variant="bart", hidden=1024, layers=12, heads=16, inner=4096, vocab=50265, positions=1024),
    "marian-tiny": dict(variant="marian", hidden=64, layers=2, heads=4, inner=128, vocab=1000, positions=128),
    "bart-tiny": dict(variant="bart", hidden=64, layers=2, heads=4, inner=128, vocab=1000, positions=128),
}


def build(name, device, dtype):
    c = CONFIGS[name]
    common = dict(vocab_size=c["vocab"], d_model=c["hidden"], encoder_layers=c["layers"], decoder_layers=c["layers"],
                  encoder_attention_heads=c["heads"], decoder_attention_heads=c["heads"], encoder_ffn_dim=c["inner"],
                  decoder_ffn_dim=c["inner"], max_position_embeddings=c["positions"], tie_word_embeddings=True,
                  dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    if c["variant"] == "marian":
        pad = c["vocab"] - 1
        cfg = MarianConfig(**common, decoder_vocab_size=c["vocab"], share_encoder_decoder_embeddings=True, activation_function="swish",
                           scale_embedding=True, pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=None)
        cls, special = MarianMTModel, dict(pad=pad, eos=0, start=pad)
    else:
        cfg = BartConfig(**common, activation_function="gelu", scale_embedding=False, bos_token_id=0, pad_token_id=1, eos_token_id=2,
                         decoder_start_token_id=2, forced_eos_token_id=None, forced_bos_token_id=None)
        cls, special = BartForConditionalGeneration, dict(pad=1, eos=2, start=2)
    with torch.device(device):
        model = cls(cfg).to(dtype).eval()
    return model, special


def sources(batch, lo, hi, vocab, seed):
    """bench/seq2seq.ts's sources(): the same LCG, draw for draw."""
    x = seed & 0xFFFFFFFF
    out = []

    def draw():
        nonlocal x
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        return x

    for _ in range(batch):
        n = lo + draw() % (hi - lo + 1)
        out.append([3 + draw() % (vocab - 4) for _ in range(n)])
    return out


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="marian,bart-large")
    ap.add_argument("--batches", default="1,32,128")
    for opt, default in (("beams", 4), ("new", 64), ("min-source", 32), ("max-source", 64), ("seed", 1), ("reps", 3)):
        ap.add_argument("--" + opt, type=int, default=default)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    dtype = torch.float16 if a.device == "cuda" else torch.float32
    results = []
    for name in a.configs.split(","):
        model, special = build(name, a.device, dtype)
        for batch in map(int, a.batches.split(",")):
            src = sources(batch, a.min_source, a.max_source, CONFIGS[name]["vocab"], a.seed)
            row = dict(config=name, batch=batch, beams=a.beams, new=a.new, source_tokens=sum(map(len, src)), ms=None, generated=None, times=None, error=None)
            try:
                longest = max(map(len, src))
                ids = torch.full((batch, longest), special["pad"], dtype=torch.long)
                mask = torch.zeros((batch, longest), dtype=torch.long)
                for b, s in enumerate(src):
                    ids[b, : len(s)] = torch.tensor(s)
                    mask[b, : len(s)] = 1
                ids, mask = ids.to(a.device), mask.to(a.device)

                def run(n):
                    gc_ = GenerationConfig(num_beams=a.beams, max_new_tokens=n, min_new_tokens=n, do_sample=False, early_stopping=False,
                                           length_penalty=1.0, num_return_sequences=1, pad_token_id=special["pad"], eos_token_id=special["eos"],
                                           decoder_start_token_id=special["start"], bos_token_id=None, forced_bos_token_id=None,
                                           forced_eos_token_id=None, no_repeat_ngram_size=0, use_cache=True)
                    with torch.no_grad():
                        return model.generate(input_ids=ids, attention_mask=mask, generation_config=gc_)

                run(min(8, a.new))  # warm-up
                times = []
                for _ in range(a.reps):
                    sync(a.device)
                    t0 = time.perf_counter()
                    out = run(a.new)
                    sync(a.device)
                    times.append((time.perf_counter() - t0) * 1e3)
                # the output starts with the decoder start token
                generated = int(out.shape[1] - 1)
                if generated != a.new:
                    raise RuntimeError(f"generated {generated} tokens, not {a.new}")
                ms = statistics.median(times)
                row.update(ms=ms, generated=generated, times=times, ms_per_source=ms / batch, tokens_per_s=batch * a.new * 1000 / ms)
            except Exception as e:  # noqa: BLE001 - reported in the table
                traceback.print_exc()
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            print(f"[seq2seq_hf] {json.dumps(row)}", file=sys.stderr, flush=True)
            results.append(row)
            with open(a.out, "w") as f:
                json.dump(dict(results=results, transformers=transformers.__version__, torch=torch.__version__,
                               device=torch.cuda.get_device_name() if a.device == "cuda" else "cpu"), f)
        del model
        gc.collect()
        if a.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
