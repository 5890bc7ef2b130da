#!/usr/bin/env python3
"""Peer benchmark: GPT-2 greedy generation with PyTorch / HF transformers on one CUDA GPU.

Measures randomly initialised GPT-2 models (no download) in fp16:
  124M = GPT2Config(n_embd=768,  n_layer=12, n_head=12, vocab_size=50257, n_positions=1024)
  1.5B = GPT2Config(n_embd=1600, n_layer=48, n_head=25, vocab_size=50257, n_positions=1024)
with a prompt of --prompt random token ids (no padding) and exactly --new greedy tokens (no EOS stop):
  hf-eager      GPT2LMHeadModel (attn_implementation="eager").generate(), default dynamic KV cache.
  torch-compile the same model with a static KV cache: eager prefill, then a gpt-fast style loop whose
                decode step decode_one(ids[B,1], pos[1]) is torch.compile(mode="reduce-overhead")
                (CUDA graphs). Tries transformers' StaticCache first ("hf-static"); if that raises or
                CUDA graphs get skipped, an own static cache + SDPA over the same weights ("own-static").
Timing: CUDA-synchronised wall time, median of --reps runs after --warmup full generations:
  prefill_ms = t(1 new token); decode_ms_per_step = (t(new) - t(1)) / (new - 1);
  tokens_per_s = batch * 1000 / decode_ms_per_step.
recompiles_during_timing counts dynamo compiles during the timed runs (expected 0). Also reports the
device-to-device copy bandwidth (2 GiB tensor copy, median of 10, bytes read + written).

Run: python3 bench/peers/gpt2_torch.py --configs 124M,1.5B --batches 1,64 \\
         --engines hf-eager,torch-compile [--prompt 128] [--new 128] --out FILE.json
Progress goes to stderr; --out is rewritten after every run, so partial results survive.
"""
import argparse, contextlib, gc, inspect, json, os, statistics, sys, time, traceback

import torch
import torch.nn.functional as F
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

CONFIGS = {"124M": dict(n_embd=768, n_layer=12, n_head=12), "1.5B": dict(n_embd=1600, n_layer=48, n_head=25)}
DEV, DT = "cuda", torch.float16


def log(msg):
    print(f"[gpt2_torch {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cleanup():
    with contextlib.suppress(Exception):
        torch._dynamo.reset()  # drops compiled code and the CUDA-graph trees with their memory pools
    gc.collect()
    torch.cuda.empty_cache()


def timed_ms(fn, reps):
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def copy_bandwidth_gbs(nbytes=2 * 1024**3, reps=10):
    a = torch.ones(nbytes, dtype=torch.uint8, device=DEV)
    b = torch.empty_like(a)
    for _ in range(2):
        b.copy_(a)
    ts = []
    for _ in range(reps):  # CUDA events around one copy each
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        ts.append(start.elapsed_time(end))
    return 2 * nbytes / (statistics.median(ts) / 1e3) / 1e9


def build_model(name):
    cfg = GPT2Config(vocab_size=50257, n_positions=1024, **CONFIGS[name])
    try:
        cfg._attn_implementation = "eager"  # property with a setter in 4.4x and 5.x
    except Exception:
        cfg._attn_implementation_internal = "eager"
    with torch.device(DEV), torch.no_grad():
        model = GPT2LMHeadModel(cfg)
        with contextlib.suppress(Exception):
            model.set_attn_implementation("eager")  # 4.5x/5.x; the config setting above covers older ones
        for pname, p in model.named_parameters():  # own quick init, independent of HF's init path
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
            elif pname.endswith("weight"):
                p.fill_(1.0)  # LayerNorm scales
            else:
                p.zero_()  # biases
    model = model.to(DEV, DT).eval()
    g = model.generation_config  # never stop early: no EOS at all
    g.eos_token_id, g.pad_token_id, g.do_sample, g.num_beams = None, 0, False, 1
    attn = getattr(model.config, "_attn_implementation", None)
    log(f"built {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, attn={attn}")
    return model


def hf_generate(model, prompt, k):
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=k,
                         min_new_tokens=k, do_sample=False, num_beams=1, use_cache=True, pad_token_id=0)
    out = out if torch.is_tensor(out) else out.sequences
    if out.shape[1] - prompt.shape[1] != k:
        raise RuntimeError(f"generate produced {out.shape[1] - prompt.shape[1]} new tokens, wanted {k}")
    return out


def run_hf_eager(model, prompt, n, args):
    with torch.inference_mode():
        for _ in range(args.warmup):
            hf_generate(model, prompt, n)
        hf_generate(model, prompt, 1)
        t1 = timed_ms(lambda: hf_generate(model, prompt, 1), args.reps)
        tn = timed_ms(lambda: hf_generate(model, prompt, n), args.reps)
    return dict(t1=t1, tn=tn)


def make_hf_static(model, B, L):
    """HF model forward with a transformers StaticCache. Returns (fwd(ids, pos) -> last logits, reset)."""
    from transformers import StaticCache
    try:
        cache = StaticCache(config=model.config, max_cache_len=L)  # 5.x: sized lazily on first update
    except TypeError:
        cache = StaticCache(config=model.config, max_batch_size=B, max_cache_len=L, device=DEV, dtype=DT)
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    use_cp = "cache_position" in params  # 4.x API; 5.x dropped it (the cache tracks its write position)

    def fwd(ids, pos):
        kw = dict(extra, cache_position=pos) if use_cp else extra
        out = model(input_ids=ids, past_key_values=cache, use_cache=True,
                    position_ids=pos.unsqueeze(0).expand(ids.shape[0], -1), **kw)
        return out.logits[:, -1, :]

    def reset():  # 5.x StaticLayer.cumulative_length is a static-address tensor: rewind it in place
        lens = [getattr(layer, "cumulative_length", None) for layer in getattr(cache, "layers", [])]
        if lens and all(torch.is_tensor(t) for t in lens):
            for t in lens:
                t.zero_()
        elif not use_cp and hasattr(cache, "reset"):
            cache.reset()
    return fwd, reset


def make_own_static(model, B, L):
    """gpt-fast style forward over the same HF modules/weights with an own static KV cache + SDPA."""
    tr, head, c = model.transformer, model.lm_head, model.config
    H, E = c.n_head, c.n_embd
    D = E // H
    kc = [torch.zeros(B, H, L, D, device=DEV, dtype=DT) for _ in tr.h]
    vc = [torch.zeros_like(t) for t in kc]
    causal = torch.ones(L, L, dtype=torch.bool, device=DEV).tril()
    for t in kc + vc + [causal]:
        torch._dynamo.mark_static_address(t)

    def fwd(ids, pos):
        b, T = ids.shape
        x = tr.wte(ids) + tr.wpe(pos)
        mask = causal[pos].view(1, 1, T, L)
        for i, blk in enumerate(tr.h):
            q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(E, dim=2)
            q, k, v = (t.view(b, T, H, D).transpose(1, 2) for t in (q, k, v))
            kc[i].index_copy_(2, pos, k)
            vc[i].index_copy_(2, pos, v)
            o = F.scaled_dot_product_attention(q, kc[i], vc[i], attn_mask=mask)
            x = x + blk.attn.c_proj(o.transpose(1, 2).reshape(b, T, E))
            x = x + blk.mlp(blk.ln_2(x))
        return head(tr.ln_f(x[:, -1, :]))
    return fwd, lambda: None


def dyn_counts():
    c = torch._dynamo.utils.counters
    return dict(graphs=int(c["stats"]["unique_graphs"]), frames=int(c["frames"]["total"]),
                breaks=int(sum(c["graph_break"].values())), skips=int(c["inductor"]["cudagraph_skips"]))


def run_static(model, prompt, n, args, impl):
    B, P = prompt.shape
    fwd, reset = (make_hf_static if impl == "hf-static" else make_own_static)(model, B, P + n)
    pre_pos, pos0 = torch.arange(P, device=DEV), torch.tensor([P], device=DEV, dtype=torch.long)
    mark_step = getattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)

    def decode_one(ids, pos):  # ids [B,1], pos [1] (a tensor, so one graph serves every step)
        return fwd(ids, pos).argmax(dim=-1, keepdim=True)
    step = torch.compile(decode_one, mode="reduce-overhead", dynamic=False, fullgraph=False)

    def gen(k):
        reset()
        tok = fwd(prompt, pre_pos).argmax(dim=-1, keepdim=True)  # prefill, not compiled
        toks, pos = [tok], pos0.clone()
        for _ in range(k - 1):
            mark_step()
            tok = step(tok, pos).clone()  # clone: a CUDA-graph output is overwritten by the next replay
            pos += 1
            toks.append(tok)
        return torch.cat(toks, dim=1)

    c0, t0 = dyn_counts(), time.perf_counter()
    with torch.no_grad():  # no_grad, as HF generate and gpt-fast use with compile (not inference_mode)
        for _ in range(args.warmup):
            gen(n)
        gen(1)
        torch.cuda.synchronize()
        warm_s, c1 = time.perf_counter() - t0, dyn_counts()
        log(f"  {impl}: warm-up incl. compile {warm_s:.1f}s, graphs {c1['graphs'] - c0['graphs']}, "
            f"graph breaks {c1['breaks'] - c0['breaks']}, cudagraph skips {c1['skips'] - c0['skips']}")
        if impl == "hf-static" and c1["skips"] > c0["skips"]:
            raise RuntimeError("CUDA graphs were skipped for the HF static-cache decode step")
        t1 = timed_ms(lambda: gen(1), args.reps)
        tn = timed_ms(lambda: gen(n), args.reps)
        c2 = dyn_counts()
        k = min(8, n)  # sanity: first tokens vs HF eager generate (fp16 near-ties may differ a little)
        match = float((gen(n)[:, :k] == hf_generate(model, prompt, k)[:, P:]).float().mean())
    return dict(t1=t1, tn=tn, impl=impl, warmup_s=round(warm_s, 2),
                recompiles_during_timing=max(c2["graphs"] - c1["graphs"], c2["frames"] - c1["frames"]),
                graph_breaks=c1["breaks"] - c0["breaks"], cudagraph_skips=c2["skips"] - c0["skips"],
                match_first8_vs_hf_eager=round(match, 4))


def run_torch_compile(model, prompt, n, args):
    errs = []
    for impl in ("hf-static", "own-static"):
        try:
            r = run_static(model, prompt, n, args, impl)
            return dict(r, fallback_reason=errs[0]) if errs else r
        except Exception as e:
            errs.append(f"{impl}: {type(e).__name__}: {e}"[:800])
            log(f"  {impl} failed:\n{traceback.format_exc()}")
            cleanup()
    raise RuntimeError(" | ".join(errs))


RUNNERS = {"hf-eager": run_hf_eager, "torch-compile": run_torch_compile}


def main():
    ap = argparse.ArgumentParser(description="GPT-2 generation peer benchmark (PyTorch / transformers)")
    for opt, default in (("configs", "124M,1.5B"), ("batches", "1,64"), ("engines", "hf-eager,torch-compile")):
        ap.add_argument("--" + opt, default=default)
    for opt, default in (("prompt", 128), ("new", 128), ("reps", 3), ("warmup", 2)):
        ap.add_argument("--" + opt, type=int, default=default)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    configs, engines = args.configs.split(","), args.engines.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    bad = [c for c in configs if c not in CONFIGS] + [e for e in engines if e not in RUNNERS]
    if bad or args.new < 2 or args.prompt < 1 or args.prompt + args.new > 1024:
        sys.exit(f"bad arguments {bad}: need known configs/engines, --new >= 2, --prompt + --new <= 1024")

    t_start = time.perf_counter()
    doc = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__,
               copy_bandwidth_gbs=None, results=[])

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)

    log(f"{doc['device']}, torch {doc['torch']}, transformers {doc['transformers']}")
    try:
        doc["copy_bandwidth_gbs"] = round(copy_bandwidth_gbs(), 1)
        log(f"device-to-device copy: {doc['copy_bandwidth_gbs']} GB/s")
    except Exception as e:
        log(f"copy bandwidth failed: {e}")
    cleanup()
    save()
    rng = torch.Generator().manual_seed(0)
    for cname in configs:
        model, build_err = None, None
        try:
            model = build_model(cname)
        except Exception as e:
            build_err = f"build: {type(e).__name__}: {e}"[:800]
            log(traceback.format_exc())
        for B in batches:
            prompt = torch.randint(0, 50257, (B, args.prompt), generator=rng).to(DEV)
            for eng in engines:
                rec = dict(engine=eng, config=cname, batch=B, prompt=args.prompt, new_tokens=args.new,
                           prefill_ms=None, decode_ms_per_step=None, tokens_per_s=None,
                           recompiles_during_timing=None, error=build_err)
                log(f"run {eng} {cname} batch {B}")
                if model is not None:
                    try:
                        r = RUNNERS[eng](model, prompt, args.new, args)
                        t1, tn = r.pop("t1"), r.pop("tn")
                        dec = (tn - t1) / (args.new - 1)
                        rec.update(r, prefill_ms=round(t1, 3), decode_ms_per_step=round(dec, 4),
                                   tokens_per_s=round(B * 1000 / dec, 1) if dec > 0 else None)
                        log(f"  -> prefill {t1:.2f} ms, decode {dec:.3f} ms/step, {rec['tokens_per_s']} tok/s, "
                            f"recompiles during timing: {rec['recompiles_during_timing']}")
                    except Exception as e:
                        rec["error"] = f"{type(e).__name__}: {e}"[:1600]
                        log(f"  -> error: {rec['error']}\n{traceback.format_exc()}")
                    finally:
                        cleanup()
                doc["results"].append(rec)
                save()
        del model
        cleanup()
    log(f"done in {time.perf_counter() - t_start:.0f}s -> {args.out}")


if __name__ == "__main__":
    main()
