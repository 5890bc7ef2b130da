#!/usr/bin/env python3
"""Peer benchmark: llama.cpp (CUDA build) decoding the Llama configurations of bench/llama.ts from GGUF files.

The llama.cpp build travels as a tarball (bin/llama-bench, bin/llama-batched-bench, bin/llama-quantize and their
shared libraries, built for sm_90a only by bench/peers/build_llama_cpp.sh or by hand; see the tarball's BUILD.txt).
It is linked against libcublas.so.13 but does not carry it: this script finds the cuBLAS of the machine (the
nvidia-cublas wheel under site-packages, a CUDA toolkit, or ldconfig's cache) and puts it on LD_LIBRARY_PATH.
The CUDA runtime is linked statically; libcuda.so.1 is the driver's.

Per configuration it writes a GGUF file with random weights (bf16, the distribution of bench/llama.ts: |x| in
[2^-9, 2^-5) with a random sign, norms 1), llama architecture metadata as convert_hf_to_gguf.py writes it and a small
synthetic byte-level BPE vocabulary (the llama3-style test tokenizer padded to 128256 tokens, Llama 3's special
tokens at 128000-128255), then llama-quantize --pure makes Q8_0 and Q4_K copies (every matrix, token_embd.weight and
output.weight included, in that type; norms stay F32). The files are kept (--gguf-dir) so that Peregrine can load
the very same weights: llama-<config>-<format>.gguf.

  1B = Llama-3.2-1B (hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192, vocab 128256, tied embeddings)
  8B = Llama-3-8B   (hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336, vocab 128256)
  (tiny = hidden 256, 2 layers, 4 heads, 2 KV heads, MLP 512, vocab 1280: for checking the script on a CPU)

Timing:
  batch 1:  llama-bench -p P -n N -d 0,P -r R -ngl 99 -fa on -o json; prefill_ms = the pp test at depth 0,
            decode_ms_per_step = the tg test at depth P (N tokens decoded after a P-token context) / N;
            medians of the R samples.
  batch B>1: llama-batched-bench -npp P -ntg N -npl B,B,...(R+1 times) -c B*(P+N) -ngl 99 -fa on --output-format jsonl;
            the first round is a warm-up; prefill_ms = t_pp (B prompts of P tokens), decode_ms_per_step = t_tg / N,
            medians of the R others.
  tokens_per_s = batch * 1000 / decode_ms_per_step.

Run (GPU machine, repo root):
  python3 bench/peers/llama_cpp.py --tarball .peer/llama-cpp.tar.xz --configs 1B,8B --formats bf16,q8_0,q4_k \
      --batches 1,64 --prompt 128 --new 128 --workdir /tmp/llama-cpp-peer --out $OUT/llama_cpp.json
It resumes: unpacked builds, finished GGUF files and results already in --out are reused (--fresh redoes results).
--time-budget S stops starting new steps after S seconds, leaving what is done in --out.
--check (no GPU needed) only writes/reads the tiny GGUFs, quantizes them and runs both benches on the CPU (-ngl 0).
"""
import argparse, glob, hashlib, json, os, re, shutil, site, statistics, subprocess, sys, tarfile, time, traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURE_TOKENIZER = os.path.join(ROOT, "test", "fixtures", "tokenizers", "llama3-style", "tokenizer.json")
FIXTURE_TOKENIZER_CONFIG = os.path.join(ROOT, "test", "fixtures", "tokenizers", "llama3-style", "tokenizer_config.json")

CONFIGS = {
    "1B": dict(hidden=2048, layers=16, heads=32, kv_heads=8, inner=8192, vocab=128256, tied=True),
    "8B": dict(hidden=4096, layers=32, heads=32, kv_heads=8, inner=14336, vocab=128256, tied=False),
    "tiny": dict(hidden=256, layers=2, heads=4, kv_heads=2, inner=512, vocab=1280, tied=True),
}
# --formats name -> (llama-quantize type argument, the GGML type every matrix must have)
FORMATS = {"bf16": (None, "BF16"), "q8_0": ("Q8_0", "Q8_0"), "q4_k": ("Q4_K", "Q4_K")}
LLAMA_FTYPE_MOSTLY_BF16 = 32

T0 = time.time()


def log(msg):
    print(f"[llama_cpp {time.time() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# the gguf package: the copy that travels in the tarball (gguf-py of the same llama.cpp commit) first, else the
# machine's


def import_gguf(build_dir):
    bundled = os.path.join(build_dir, "gguf-py") if build_dir else None
    if bundled and os.path.isdir(bundled):
        sys.path.insert(0, bundled)
        try:
            import gguf  # noqa: F401
            return gguf
        except Exception as e:  # noqa: BLE001 - a missing dependency of the bundled copy: try the installed one
            log(f"bundled gguf-py did not import ({type(e).__name__}: {e}); trying the installed gguf package")
            sys.path.remove(bundled)
            for k in [k for k in sys.modules if k == "gguf" or k.startswith("gguf.")]:
                del sys.modules[k]
    import gguf
    return gguf


# ---------------------------------------------------------------------------------------------------------------
# the build


def unpack(tarball, workdir):
    """The tarball unpacked under workdir/llama-cpp-<first 12 hex of its sha256>; returns that directory."""
    h = hashlib.sha256()
    with open(tarball, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    dest = os.path.join(workdir, "llama-cpp-" + h.hexdigest()[:12])
    if os.path.exists(os.path.join(dest, ".complete")):
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    with tarfile.open(tarball) as t:
        members = t.getmembers()
        for m in members:
            if m.name.startswith("/") or ".." in m.name.split("/"):
                raise SystemExit(f"refusing tarball member {m.name}")
        t.extractall(dest)  # noqa: S202 - our own artefact, names checked above
    # the tarball holds one top directory (llama-cpp/); use it
    tops = [d for d in os.listdir(dest) if os.path.isdir(os.path.join(dest, d))]
    if len(tops) == 1 and not os.path.isdir(os.path.join(dest, "bin")):
        inner = os.path.join(dest, tops[0])
        for n in os.listdir(inner):
            os.rename(os.path.join(inner, n), os.path.join(dest, n))
        os.rmdir(inner)
    open(os.path.join(dest, ".complete"), "w").close()
    return dest


def candidate_lib_dirs():
    dirs = []
    roots = []
    try:
        roots += site.getsitepackages()
    except Exception:  # noqa: BLE001 - virtualenvs of old pythons lack it
        pass
    try:
        roots.append(site.getusersitepackages())
    except Exception:  # noqa: BLE001
        pass
    roots += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    try:  # nvidia is a namespace package: every place it lives
        import nvidia  # noqa: F401
        roots += [os.path.dirname(p) for p in nvidia.__path__]
    except Exception:  # noqa: BLE001
        pass
    for r in dict.fromkeys(roots):
        dirs += sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")))  # cu13/lib, cublas/lib, cuda_runtime/lib ...
        dirs += sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib64")))
        dirs.append(os.path.join(r, "torch", "lib"))
    for c in sorted(glob.glob("/usr/local/cuda*"), reverse=True):
        dirs += [os.path.join(c, "lib64"), os.path.join(c, "targets", "x86_64-linux", "lib")]
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=20).stdout
        dirs += [os.path.dirname(m) for m in re.findall(r"=>\s*(\S*libcublas\S*\.so\.13)\s*$", out, re.M)]
    except Exception:  # noqa: BLE001 - no ldconfig on PATH
        pass
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def find_cuda_libs():
    """{soname: directory} for the CUDA 13 libraries the build loads from the machine."""
    want = ["libcublas.so.13", "libcublasLt.so.13"]
    found = {}
    for d in candidate_lib_dirs():
        for lib in want:
            if lib not in found and os.path.exists(os.path.join(d, lib)):
                found[lib] = d
    missing = [w for w in want if w not in found]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not found (looked in site-packages/nvidia/*/lib, torch/lib, /usr/local/cuda*/lib64, "
                         f"the system library directories and ldconfig's cache); install nvidia-cublas (CUDA 13) or a CUDA 13 toolkit")
    return found


def build_env(build_dir, check, stubs):
    bindir = os.path.join(build_dir, "bin")
    env = dict(os.environ)
    paths = []
    if check:
        # CPU check: the link-time stubs (libcublas.so.13, libcuda.so.1) stand in when the machine has none
        try:
            cuda = find_cuda_libs()
            paths += list(dict.fromkeys(cuda.values()))
        except SystemExit:
            if stubs and os.path.isdir(stubs):
                paths.append(stubs)
        if stubs and os.path.isdir(stubs) and not any(os.path.exists(os.path.join(d, "libcuda.so.1")) for d in ["/usr/lib/x86_64-linux-gnu", "/usr/lib64"]):
            paths.append(stubs)
    else:
        cuda = find_cuda_libs()
        paths += list(dict.fromkeys(cuda.values()))
    env["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(paths + [bindir] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]))
    p = subprocess.run(["ldd", os.path.join(bindir, "llama-bench")], capture_output=True, text=True, env=env)
    out = p.stdout + p.stderr
    missing = [l.strip() for l in out.splitlines() if "not found" in l]
    if missing:
        raise SystemExit("llama-bench cannot load (it needs glibc >= 2.34 and the libstdc++ of GCC 12 or later, GLIBCXX_3.4.30): "
                         + "; ".join(missing) + f"\nldd:\n{out}")
    libs = {}
    for l in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(\S+)", l)
        if m:
            libs[m.group(1)] = m.group(2)
    return env, libs


# ---------------------------------------------------------------------------------------------------------------
# the GGUF files


def synthetic_vocab(n_vocab):
    """Byte-level BPE tokens, types and merges: the llama3-style test tokenizer, normal padding tokens, and Llama 3's
    256 special tokens at the end (<|begin_of_text|> = n_vocab - 256, ..., <|eot_id|> = n_vocab - 247)."""
    with open(FIXTURE_TOKENIZER, encoding="utf-8") as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    base = [None] * len(vocab)
    for tok, i in vocab.items():
        base[i] = tok
    assert all(t is not None for t in base), "fixture vocabulary ids are not 0..n-1"
    n_special = 256
    if n_vocab < len(base) + n_special:
        raise SystemExit(f"vocab {n_vocab} is smaller than the {len(base)} fixture tokens + {n_special} special ones")
    first_special = n_vocab - n_special
    tokens = list(base) + [f"<|pad_{i}|>" for i in range(len(base), first_special)]
    names = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: "<|eot_id|>"}
    reserved = 0
    for k in range(n_special):
        if k in names:
            tokens.append(names[k])
        else:
            tokens.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    types = [1] * first_special + [3] * n_special  # NORMAL, CONTROL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    assert len(tokens) == n_vocab and len(set(tokens)) == n_vocab
    template = None
    try:
        with open(FIXTURE_TOKENIZER_CONFIG, encoding="utf-8") as f:
            template = json.load(f).get("chat_template")
    except OSError:
        pass
    return dict(tokens=tokens, types=types, merges=merges, bos=first_special, eos=first_special + 1, eot=first_special + 9, template=template)


def gguf_tensors(c):
    """(name, numpy shape [rows, cols] or [n], kind) in the order convert_hf_to_gguf.py writes a Llama."""
    D = c["hidden"] // c["heads"]
    out = [("token_embd.weight", (c["vocab"], c["hidden"]), "w")]
    for l in range(c["layers"]):
        p = f"blk.{l}."
        out += [
            (p + "attn_norm.weight", (c["hidden"],), "norm"),
            (p + "ffn_down.weight", (c["hidden"], c["inner"]), "w"),
            (p + "ffn_gate.weight", (c["inner"], c["hidden"]), "w"),
            (p + "ffn_up.weight", (c["inner"], c["hidden"]), "w"),
            (p + "ffn_norm.weight", (c["hidden"],), "norm"),
            (p + "attn_k.weight", (c["kv_heads"] * D, c["hidden"]), "w"),
            (p + "attn_output.weight", (c["hidden"], c["heads"] * D), "w"),
            (p + "attn_q.weight", (c["heads"] * D, c["hidden"]), "w"),
            (p + "attn_v.weight", (c["kv_heads"] * D, c["hidden"]), "w"),
        ]
    out.append(("output_norm.weight", (c["hidden"],), "norm"))
    if not c["tied"]:
        out.append(("output.weight", (c["vocab"], c["hidden"]), "w"))
    return out


def random_bf16(np, pool, key, shape):
    """bf16 bit patterns with |x| in [2^-9, 2^-5): a random sign and mantissa, exponent 118..121 (bench/llama.ts);
    made in chunks on a thread pool (numpy's generators release the GIL), each chunk seeded by (key, its offset)."""
    n = 1
    for d in shape:
        n *= d
    out = np.empty(n, dtype=np.uint16)
    step = 1 << 22

    def fill(i):
        bits = np.random.default_rng(list(key) + [i]).integers(0, 1 << 16, size=min(step, n - i), dtype=np.uint16)
        out[i:i + len(bits)] = (bits & 0x807F) | ((118 + (bits & 3)) << 7)
    list(pool.map(fill, range(0, n, step)))
    return out.reshape(shape)


def write_bf16_gguf(gguf, np, name, c, path, seed=0):
    """A bf16 GGUF of configuration c at path, one tensor in memory at a time."""
    tmp = path + ".part"
    D = c["hidden"] // c["heads"]
    v = synthetic_vocab(c["vocab"])
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_string("general.type", "model")
    w.add_string("general.name", f"peregrine-bench random Llama {name}")
    w.add_uint32("llama.block_count", c["layers"])
    w.add_uint32("llama.context_length", 8192)
    w.add_uint32("llama.embedding_length", c["hidden"])
    w.add_uint32("llama.feed_forward_length", c["inner"])
    w.add_uint32("llama.attention.head_count", c["heads"])
    w.add_uint32("llama.attention.head_count_kv", c["kv_heads"])
    w.add_float32("llama.rope.freq_base", 500000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_uint32("general.file_type", LLAMA_FTYPE_MOSTLY_BF16)
    w.add_uint32("llama.vocab_size", c["vocab"])
    w.add_uint32("llama.rope.dimension_count", D)
    w.add_uint32("general.quantization_version", 2)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "llama-bpe")
    w.add_array("tokenizer.ggml.tokens", v["tokens"])
    w.add_array("tokenizer.ggml.token_type", v["types"])
    w.add_array("tokenizer.ggml.merges", v["merges"])
    w.add_uint32("tokenizer.ggml.bos_token_id", v["bos"])
    w.add_uint32("tokenizer.ggml.eos_token_id", v["eos"])
    w.add_uint32("tokenizer.ggml.eot_token_id", v["eot"])
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    if v["template"]:
        w.add_string("tokenizer.chat_template", v["template"])
    specs = gguf_tensors(c)
    for tname, shape, kind in specs:
        n = 1
        for d in shape:
            n *= d
        if kind == "norm":
            w.add_tensor_info(tname, shape, np.dtype(np.float32), n * 4, raw_dtype=gguf.GGMLQuantizationType.F32)
        else:
            w.add_tensor_info(tname, shape, np.dtype(np.uint16), n * 2, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as pool:
        for i, (tname, shape, kind) in enumerate(specs):
            if kind == "norm":
                w.write_tensor_data(np.ones(shape, dtype=np.float32))
            else:
                w.write_tensor_data(random_bf16(np, pool, (seed, i), shape))
    w.close()
    os.replace(tmp, path)


def gguf_summary(gguf, path):
    """{type name: tensor count} and a few metadata values of a GGUF file, read back with GGUFReader."""
    r = gguf.GGUFReader(path)
    types = {}
    shapes = {}
    for t in r.tensors:
        tn = t.tensor_type.name
        types[tn] = types.get(tn, 0) + 1
        shapes[t.name] = (tn, [int(x) for x in t.shape])

    def field(key):
        f = r.fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except AttributeError:  # older gguf: decode the last part
            part = f.parts[f.data[0]]
            return bytes(part).decode("utf-8") if f.types and f.types[0] == gguf.GGUFValueType.STRING else part.tolist()
    meta = {k: field(k) for k in ("general.architecture", "general.file_type", "llama.embedding_length", "llama.block_count",
                                  "llama.attention.head_count", "llama.attention.head_count_kv", "llama.feed_forward_length",
                                  "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id")}
    n_tokens = len(r.fields["tokenizer.ggml.tokens"].data)
    return dict(types=types, n_tensors=len(r.tensors), n_tokens=n_tokens, meta=meta,
                embd=shapes.get("token_embd.weight"), output=shapes.get("output.weight"), size=os.path.getsize(path))


def check_bf16_file(gguf, np, c, path):
    """Every tensor of the bf16 file has the shape and type gguf_tensors says, and sampled weights are in range."""
    r = gguf.GGUFReader(path)
    specs = {n: (s, k) for n, s, k in gguf_tensors(c)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(specs), f"tensor names differ: {sorted(set(got) ^ set(specs))[:5]}"
    for n, (shape, kind) in specs.items():
        t = got[n]
        want_type = "F32" if kind == "norm" else "BF16"
        assert t.tensor_type.name == want_type, (n, t.tensor_type.name)
        assert [int(x) for x in t.shape] == list(reversed(shape)), (n, list(t.shape), shape)  # GGUF lists ne[0] first
    t = got["blk.0.attn_q.weight"]
    bits = np.asarray(t.data).view(np.uint16).reshape(-1)[:4096].astype(np.uint32)
    vals = (bits << 16).view(np.float32)
    assert np.all(np.abs(vals) >= 2.0 ** -9) and np.all(np.abs(vals) < 2.0 ** -5), "weights out of range"
    assert np.all(np.asarray(got["output_norm.weight"].data) == 1.0)
    v = r.fields["tokenizer.ggml.tokens"]
    assert len(v.data) == c["vocab"]


def ensure_ggufs(gguf, np, build_dir, env, name, formats, gguf_dir, threads, deadline):
    c = CONFIGS[name]
    paths = {}
    bf16 = os.path.join(gguf_dir, f"llama-{name}-bf16.gguf")
    if not os.path.exists(bf16):
        D = c["hidden"] // c["heads"]
        params = c["vocab"] * c["hidden"] * (1 if c["tied"] else 2) + c["layers"] * (
            2 * c["hidden"] * c["heads"] * D + 2 * c["hidden"] * c["kv_heads"] * D + 3 * c["hidden"] * c["inner"])
        need = params * (2 + sum({"q8_0": 34 / 32, "q4_k": 144 / 256}.get(f, 0) for f in formats)) + (1 << 30)
        free = shutil.disk_usage(gguf_dir).free
        if free < need:
            raise SystemExit(f"{gguf_dir}: {free / 1e9:.1f} GB free, the {name} files ({', '.join(formats)}) need about {need / 1e9:.1f} GB")
        log(f"writing {bf16} ({params / 1e6:.0f} M parameters)")
        t = time.time()
        write_bf16_gguf(gguf, np, name, c, bf16)
        log(f"wrote {bf16} in {time.time() - t:.0f} s")
        if name == "tiny":
            check_bf16_file(gguf, np, c, bf16)
            log("tiny bf16 file read back with GGUFReader: names, shapes, types and weight range as written")
    paths["bf16"] = bf16
    for fmt in formats:
        qtype, _ = FORMATS[fmt]
        if qtype is None:
            continue
        out = os.path.join(gguf_dir, f"llama-{name}-{fmt}.gguf")
        if not os.path.exists(out):
            if deadline and time.time() > deadline:
                log(f"time budget spent: {out} not made")
                continue
            log(f"llama-quantize --pure {bf16} -> {out} ({qtype})")
            t = time.time()
            cmd = [os.path.join(build_dir, "bin", "llama-quantize"), "--pure", bf16, out + ".part", qtype, str(threads)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"llama-quantize failed ({p.returncode}): {(p.stderr or p.stdout)[-3000:]}")
            os.replace(out + ".part", out)
            log(f"quantized in {time.time() - t:.0f} s")
        paths[fmt] = out
    return paths


# ---------------------------------------------------------------------------------------------------------------
# the benchmarks


def run_tool(cmd, env, timeout):
    log(" ".join(cmd))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} exited with {p.returncode}: {p.stderr[-3000:]}")
    return p


def bench_batch1(build_dir, env, path, prompt, new, reps, ngl, fa, timeout):
    cmd = [os.path.join(build_dir, "bin", "llama-bench"), "-m", path, "-p", str(prompt), "-n", str(new), "-d", f"0,{prompt}",
           "-r", str(reps), "-ngl", str(ngl), "-fa", fa, "-o", "json"]
    p = run_tool(cmd, env, timeout)
    tests = json.loads(p.stdout)
    pp = [t for t in tests if t["n_prompt"] == prompt and t["n_gen"] == 0 and t.get("n_depth", 0) == 0]
    tg = [t for t in tests if t["n_prompt"] == 0 and t["n_gen"] == new and t.get("n_depth", 0) == prompt]
    if not pp or not tg:
        raise RuntimeError(f"llama-bench output lacks pp{prompt}@d0 or tg{new}@d{prompt}: {p.stdout[:2000]}")
    pp, tg = pp[0], tg[0]
    prefill_ms = statistics.median(pp["samples_ns"]) / 1e6
    step_ms = statistics.median(tg["samples_ns"]) / 1e6 / new
    info = {k: pp.get(k) for k in ("build_commit", "gpu_info", "cpu_info", "backends", "model_type", "model_size", "model_n_params",
                                   "n_batch", "n_ubatch", "flash_attn", "type_k", "type_v", "n_threads")}
    return dict(prefill_ms=prefill_ms, decode_ms_per_step=step_ms, tokens_per_s=1000 / step_ms,
                samples=dict(prefill_ns=pp["samples_ns"], decode_ns=tg["samples_ns"]), info=info, stderr_tail=p.stderr[-1500:])


def bench_batched(build_dir, env, path, batch, prompt, new, reps, ngl, fa, timeout):
    rounds = [str(batch)] * (reps + 1)
    ctx = batch * (prompt + new)
    cmd = [os.path.join(build_dir, "bin", "llama-batched-bench"), "-m", path, "-c", str(ctx), "-npp", str(prompt), "-ntg", str(new),
           "-npl", ",".join(rounds), "-ngl", str(ngl), "-fa", fa, "--output-format", "jsonl"]
    p = run_tool(cmd, env, timeout)
    rows = []
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        line = line.strip()
        if line.startswith("{") and '"speed_tg"' in line:
            rows.append(json.loads(line))
    rows = [r for r in rows if r["pl"] == batch and r["pp"] == prompt and r["tg"] == new]
    if len(rows) != reps + 1:
        raise RuntimeError(f"llama-batched-bench printed {len(rows)} rounds, expected {reps + 1} (context {ctx} too small?): {p.stderr[-2000:]}")
    timed = rows[1:]
    prefill_ms = statistics.median(r["t_pp"] for r in timed) * 1000
    step_ms = statistics.median(r["t_tg"] for r in timed) * 1000 / new
    info = {k: rows[0].get(k) for k in ("n_kv_max", "n_batch", "n_ubatch", "flash_attn", "n_gpu_layers", "n_threads")}
    return dict(prefill_ms=prefill_ms, decode_ms_per_step=step_ms, tokens_per_s=batch * 1000 / step_ms,
                samples=dict(rounds=rows), info=info, stderr_tail=p.stderr[-1500:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tarball", default=os.path.join(ROOT, ".peer", "llama-cpp.tar.xz"))
    ap.add_argument("--build-dir", help="an unpacked build instead of --tarball")
    ap.add_argument("--configs", default="1B,8B")
    ap.add_argument("--formats", default="bf16,q8_0,q4_k")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/llama-cpp-peer")
    ap.add_argument("--gguf-dir", help="where the GGUF files are made and kept (default WORKDIR/gguf)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fresh", action="store_true", help="measure again what --out already holds")
    ap.add_argument("--gguf-only", action="store_true", help="make the GGUF files, measure nothing")
    ap.add_argument("--time-budget", type=float, default=0, help="seconds; start no new step after them")
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--flash-attn", default="on", choices=["on", "off", "auto"])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 4)
    ap.add_argument("--tool-timeout", type=int, default=420)
    ap.add_argument("--check", action="store_true", help="CPU self-check: tiny config, -ngl 0, GPU not needed")
    ap.add_argument("--stubs", default="/tmp/llama-stubs", help="with --check where the machine has no cuBLAS/driver: the link-time stubs of build_llama_cpp.sh")
    a = ap.parse_args()
    if a.check:
        a.configs, a.ngl, a.prompt, a.new, a.reps = "tiny", 0, min(a.prompt, 32), min(a.new, 16), 2
        a.batches = "1,4"
    deadline = T0 + a.time_budget if a.time_budget else 0
    configs = a.configs.split(",")
    formats = a.formats.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"unknown config {c}; use {', '.join(CONFIGS)}")
    for f in formats:
        if f not in FORMATS:
            raise SystemExit(f"unknown format {f}; use {', '.join(FORMATS)}")
    os.makedirs(a.workdir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    gguf_dir = a.gguf_dir or os.path.join(a.workdir, "gguf")
    os.makedirs(gguf_dir, exist_ok=True)

    build_dir = os.path.abspath(a.build_dir) if a.build_dir else unpack(a.tarball, a.workdir)
    gguf = import_gguf(build_dir)
    import numpy as np
    env, libs = build_env(build_dir, a.check, a.stubs)
    log(f"build {build_dir}; gguf {getattr(gguf, '__file__', '?')}; libraries: "
        + ", ".join(f"{k} => {v}" for k, v in libs.items() if re.match(r"lib(cublas|cuda|cudart|stdc\+\+|ggml|llama)", k)))
    build_txt = os.path.join(build_dir, "BUILD.txt")
    result = {"engine": "llama.cpp", "build": open(build_txt).read() if os.path.exists(build_txt) else None, "libraries": libs,
              "prompt": a.prompt, "new": a.new, "reps": a.reps, "flash_attn": a.flash_attn, "ngl": a.ngl, "gguf_dir": gguf_dir,
              "devices": None, "files": {}, "results": []}
    if os.path.exists(a.out) and not a.fresh:
        try:
            with open(a.out) as f:
                old = json.load(f)
            if old.get("prompt") == a.prompt and old.get("new") == a.new:
                result["results"] = old.get("results", [])
                result["files"] = old.get("files", {})
        except (OSError, ValueError):
            pass

    def save():
        tmp = a.out + ".part"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, a.out)

    p = subprocess.run([os.path.join(build_dir, "bin", "llama-bench"), "--list-devices"], env=env, capture_output=True, text=True, timeout=120)
    result["devices"] = (p.stdout + p.stderr).strip()[-2000:]
    log("devices: " + result["devices"].replace("\n", " | "))
    if not a.check and "CUDA" not in result["devices"]:
        save()
        raise SystemExit("llama.cpp sees no CUDA device (is the real libcublas.so.13 loaded, and the driver's libcuda.so.1?)")

    for name in configs:
        if deadline and time.time() > deadline:
            log(f"time budget spent before {name}")
            break
        paths = ensure_ggufs(gguf, np, build_dir, env, name, formats, gguf_dir, a.threads, deadline)
        for fmt, path in paths.items():
            if fmt not in formats:
                continue
            key = f"{name} {fmt}"
            if key not in result["files"] or result["files"][key].get("size") != os.path.getsize(path):
                s = gguf_summary(gguf, path)
                want = FORMATS[fmt][1]
                s["every_matrix"] = want if set(s["types"]) <= {want, "F32"} else f"NOT ALL {want}: {s['types']}"
                result["files"][key] = dict(path=path, **s)
                log(f"{os.path.basename(path)}: {s['types']}, token_embd {s['embd']}, output {s['output']}, {s['size'] / 1e9:.2f} GB")
                save()
        if a.gguf_only:
            continue
        for fmt in formats:
            if fmt not in paths:
                continue
            for batch in batches:
                done = [r for r in result["results"] if r["config"] == name and r["format"] == fmt and r["batch"] == batch and not r.get("error")]
                if done:
                    continue
                if deadline and time.time() > deadline:
                    log(f"time budget spent before {name} {fmt} x{batch}")
                    break
                result["results"] = [r for r in result["results"] if not (r["config"] == name and r["format"] == fmt and r["batch"] == batch)]
                row = dict(engine="llama.cpp", config=name, format=fmt, batch=batch, prefill_ms=None, decode_ms_per_step=None, tokens_per_s=None,
                           error=None, tool="llama-bench" if batch == 1 else "llama-batched-bench")
                try:
                    t = time.time()
                    if batch == 1:
                        r = bench_batch1(build_dir, env, paths[fmt], a.prompt, a.new, a.reps, a.ngl, a.flash_attn, a.tool_timeout)
                    else:
                        r = bench_batched(build_dir, env, paths[fmt], batch, a.prompt, a.new, a.reps, a.ngl, a.flash_attn, a.tool_timeout)
                    row.update(r)
                    row["wall_s"] = time.time() - t
                except Exception as e:  # noqa: BLE001 - reported in the table
                    traceback.print_exc()
                    row["error"] = f"{type(e).__name__}: {str(e)[-600:]}"
                log(f"{name} {fmt} x{batch}: prefill {row['prefill_ms']} ms, decode {row['decode_ms_per_step']} ms/step, "
                    f"{row['tokens_per_s']} tokens/s{'  ERROR ' + row['error'] if row['error'] else ''}")
                result["results"].append(row)
                save()
    save()
    print("| config | format | batch | prefill ms | decode ms/step | tokens/s | note |\n|---|---|---|---|---|---|---|")
    fmt = lambda v: "-" if v is None else f"{v:.3g}" if v < 100 else f"{v:.0f}"  # noqa: E731
    for r in sorted(result["results"], key=lambda r: (r["config"], r["format"], r["batch"])):
        print(f"| {r['config']} | {r['format']} | {r['batch']} | {fmt(r['prefill_ms'])} | {fmt(r['decode_ms_per_step'])} | "
              f"{fmt(r['tokens_per_s'])} | {('error: ' + r['error'][:120]) if r.get('error') else ''} |", flush=True)
    errors = [r for r in result["results"] if r.get("error")]
    log(f"done: {len(result['results']) - len(errors)} results, {len(errors)} errors -> {a.out}")
    if a.check:
        ok = not errors and len(result["results"]) == len(formats) * len(batches)
        log("CHECK " + ("PASSED" if ok else "FAILED"))
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
