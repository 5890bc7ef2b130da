"""E4M3 (float8_e4m3fn) as torch rounds and reads it (test/fixtures/quant/fp8.json): src/loaders/fp8.ts must agree bit for
bit. The value of each of the 256 bytes (NaN as null), and float32 values inside +-448 with the byte torch's cast gives
each: normals at several scales, exact ties between neighbours (round to nearest even) in normal and subnormal
binades, values below the smallest subnormal, and values near 448. Runs where torch is installed:

    python3 tools/reference/make_fp8_fixture.py test/fixtures/quant/fp8.json
"""
import json
import sys

import torch

codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).to(torch.float32)
values = [None if v != v else float(v) for v in codes.tolist()]

g = torch.Generator().manual_seed(0)
xs = [torch.randn(64, generator=g) * s for s in (1e-3, 0.02, 1.0, 30.0, 150.0)]
finite = sorted({v for v in values if v is not None and abs(v) < 448})
ties = [(a + b) / 2 for a, b in zip(finite, finite[1:])]
xs.append(torch.tensor(ties, dtype=torch.float32))
xs.append(torch.tensor([2.0 ** -10, -(2.0 ** -10), 2.0 ** -11, 3 * 2.0 ** -11, 440.0, -447.9, 447.0, 0.0, -0.0], dtype=torch.float32))
x = torch.cat(xs).to(torch.float32)
q = x.to(torch.float8_e4m3fn).view(torch.uint8)
with open(sys.argv[1], "w") as f:
    json.dump({"values": values, "x": [float(v) for v in x.tolist()], "bytes": q.tolist()}, f, separators=(",", ":"))
