"""Writes the pytorch_model.bin fixtures (test/fixtures/torch-bin) with torch.save, from committed safetensors fixtures.

Runs where torch and safetensors are installed (CPU only). Usage, from the repository root:

    python3 tools/reference/make_torch_bin_fixtures.py --fixtures test/fixtures

- bert-wide/:            the bert-wide weights as one pytorch_model.bin (fp16), with the int64 position_ids buffer
                         transformers 4 saved (an expanded view); config and tokenizer files link to ../../bert-wide.
- llama3-tiny-sharded/:  the llama3-tiny weights in two torch.save shards with pytorch_model.bin.index.json, as
                         transformers 4's save_pretrained(safe_serialization=False, max_shard_size=...) wrote them.
- views.bin, views.json: a state dict of views into shared storages (transposed, offset, strided, tied, 0-d, empty,
                         a Parameter, fp16/bf16/int64/bool) and each tensor's values in row-major order.
- hostile/*.bin:         archives Peregrine must refuse: GLOBALs of os.system and builtins.exec, a REDUCE of a storage
                         type, a storage offset out of range, a storage larger than its entry, a duplicate key, a
                         deflated entry, the legacy (pre-1.6) format, and a training checkpoint that nests its state
                         dict. Nothing in them may ever run; the ones that would run code touch /tmp/peregrine-pwned-*.
"""
import argparse
import io
import json
import os
import pickletools
import zipfile
from collections import OrderedDict

import torch
from safetensors.torch import load_file

LINKED = ("config.json", "generation_config.json", "reference.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def link_dir(out, source):
    """A directory whose non-weight files link to those of `source` (a sibling fixture two levels up)."""
    os.makedirs(out, exist_ok=True)
    for f in LINKED:
        if not os.path.lexists(os.path.join(source, f)):
            continue
        dst = os.path.join(out, f)
        if os.path.lexists(dst):
            os.remove(dst)
        os.symlink(os.path.join("..", "..", os.path.basename(source), f), dst)


def bert_wide(fixtures, out):
    link_dir(out, os.path.join(fixtures, "bert-wide"))
    sd = OrderedDict(sorted(load_file(os.path.join(fixtures, "bert-wide", "model.safetensors")).items()))
    positions = json.load(open(os.path.join(fixtures, "bert-wide", "config.json")))["max_position_embeddings"]
    sd["embeddings.position_ids"] = torch.arange(positions).expand((1, -1))
    torch.save(sd, os.path.join(out, "pytorch_model.bin"))


def llama_sharded(fixtures, out):
    link_dir(out, os.path.join(fixtures, "llama3-tiny"))
    sd = OrderedDict(sorted(load_file(os.path.join(fixtures, "llama3-tiny", "model.safetensors")).items()))
    names = list(sd)
    half = len(names) // 2
    shards = [names[:half], names[half:]]
    weight_map, total = {}, 0
    for i, part in enumerate(shards):
        fname = "pytorch_model-%05d-of-%05d.bin" % (i + 1, len(shards))
        torch.save(OrderedDict((n, sd[n]) for n in part), os.path.join(out, fname))
        for n in part:
            weight_map[n] = fname
            total += sd[n].numel() * sd[n].element_size()
    with open(os.path.join(out, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def views(out):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 4 - 2
    half = (torch.arange(6, dtype=torch.float16).reshape(2, 3) - 2.5)
    sd = OrderedDict()
    sd["base"] = base
    sd["transposed"] = base.t()
    sd["row"] = base[2]
    sd["strided"] = base[:, 1::2]
    sd["tied"] = base
    sd["block"] = base[1:3, 2:5]
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["half_t"] = half.t()
    sd["bf16"] = torch.tensor([1.5, -2.25, 1e30, 0.0], dtype=torch.bfloat16)
    sd["position_ids"] = torch.arange(5).expand((1, -1))
    sd["param"] = torch.nn.Parameter(torch.tensor([0.25, -0.5, 0.75]))
    sd["flag"] = torch.tensor([True, False, True])
    torch.save(sd, os.path.join(out, "views.bin"))
    dtypes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.bool: "BOOL"}
    ref = {n: {"dtype": dtypes[t.dtype], "shape": list(t.shape), "values": t.detach().float().flatten().tolist()} for n, t in sd.items()}
    with open(os.path.join(out, "views.json"), "w") as f:
        json.dump(ref, f, indent=1)


class Runs:
    """An object whose pickle calls `fn(*args)` when loaded by pickle or torch.load(weights_only=False)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def rezip(src, dst, edit=None, compression=zipfile.ZIP_STORED):
    """Copies the archive `src` to `dst` through Python's zipfile, `edit(name, bytes)` changing entries on the way."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if edit:
                data = edit(info.filename, data)
            zout.writestr(info.filename, data)


def patch_pickle(pkl, find):
    """Bytes of `pkl` with one opcode argument changed: `find(ops)` returns (byte position, new byte)."""
    ops = list(pickletools.genops(pkl))
    at, value = find(ops)
    b = bytearray(pkl)
    b[at] = value
    return bytes(b)


def after_persid(ops, n):
    """The position of the one-byte argument of the BININT1 that follows the n-th BINPERSID (a storage offset)."""
    seen = -1
    for i, (op, _, _) in enumerate(ops):
        if op.name == "BINPERSID":
            seen += 1
            if seen == n:
                nxt = ops[i + 1]
                assert nxt[0].name == "BININT1"
                return nxt[2] + 1
    raise AssertionError("no such BINPERSID")


def hostile(out):
    os.makedirs(out, exist_ok=True)
    w = torch.arange(6, dtype=torch.float32)
    tmp = os.path.join(out, "_base.bin")

    torch.save(OrderedDict(w=w, x=Runs(os.system, ("touch /tmp/peregrine-pwned-os-system",))), os.path.join(out, "os-system.bin"))
    torch.save(OrderedDict(w=w, x=Runs(exec, ("open('/tmp/peregrine-pwned-exec', 'w').close()",))), os.path.join(out, "exec.bin"))

    # REDUCE of an allowlisted name that is no function: torch.FloatStorage('x'), written by hand
    pkl = b"\x80\x02}(X\x01\x00\x00\x00wctorch\nFloatStorage\nX\x01\x00\x00\x00x\x85Ru."
    with zipfile.ZipFile(os.path.join(out, "reduce-storage.bin"), "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")

    # a view past its storage: w[4:] (offset 4, size 2) with the offset byte set to 250
    torch.save(OrderedDict(w=w[4:]), tmp)
    rezip(tmp, os.path.join(out, "offset-out-of-range.bin"),
          lambda name, data: patch_pickle(data, lambda ops: (after_persid(ops, 0), 250)) if name.endswith("data.pkl") else data)

    # the storage record says 200 elements, its entry holds 6
    def numel(ops):
        i = next(i for i, (op, _, _) in enumerate(ops) if op.name == "BINPERSID")
        j = max(k for k in range(i) if ops[k][0].name == "BININT1")
        return ops[j][2] + 1, 200
    torch.save(OrderedDict(w=w), tmp)
    rezip(tmp, os.path.join(out, "storage-too-small.bin"), lambda name, data: patch_pickle(data, numel) if name.endswith("data.pkl") else data)

    # two keys "a": the second tensor would silently replace the first
    def duplicate(ops):
        names = [(op, arg, pos) for op, arg, pos in ops if op.name == "BINUNICODE" and arg == "b"]
        return names[0][2] + 5, ord("a")
    torch.save(OrderedDict(a=w, b=w * 2), tmp)
    rezip(tmp, os.path.join(out, "duplicate-key.bin"), lambda name, data: patch_pickle(data, duplicate) if name.endswith("data.pkl") else data)

    torch.save(OrderedDict(w=w), tmp)
    rezip(tmp, os.path.join(out, "compressed.bin"), compression=zipfile.ZIP_DEFLATED)
    torch.save(OrderedDict(w=w), os.path.join(out, "legacy.bin"), _use_new_zipfile_serialization=False)
    torch.save({"model": OrderedDict(w=w), "epoch": 3}, os.path.join(out, "training-checkpoint.bin"))
    os.remove(tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="test/fixtures")
    a = ap.parse_args()
    out = os.path.join(a.fixtures, "torch-bin")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    bert_wide(a.fixtures, os.path.join(out, "bert-wide"))
    llama_sharded(a.fixtures, os.path.join(out, "llama3-tiny-sharded"))
    views(out)
    hostile(os.path.join(out, "hostile"))


if __name__ == "__main__":
    main()
