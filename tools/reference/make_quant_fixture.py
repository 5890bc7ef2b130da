"""Random ggml blocks of each quantized type Peregrine reads, with the values the `gguf` package's dequantize gives them
(test/fixtures/quant/blocks.json): src/loaders/quant.ts must agree bit for bit. The scale fields get fixed, finite
fp16 values; every other byte is random. Runs where numpy and gguf are installed:

    python3 tools/reference/make_quant_fixture.py test/fixtures/quant/blocks.json
"""
import json
import sys

import numpy as np
import gguf.quants as q
from gguf import GGMLQuantizationType as T

rng = np.random.default_rng(0)
out = {}
for t, size, scales in [(T.Q8_0, 34, [(0, 0.0123)]), (T.Q4_0, 18, [(0, -0.0201)]), (T.Q4_K, 144, [(0, 0.031), (2, 0.007)]),
                        (T.Q5_K, 176, [(0, 0.029), (2, -0.004)]), (T.Q6_K, 210, [(208, 0.0091)])]:
    blocks = rng.integers(0, 256, size=(3, size), dtype=np.uint8)
    for col, value in scales:
        blocks[:, col:col + 2] = np.frombuffer(np.full(3, value, dtype=np.float16).tobytes(), dtype=np.uint8).reshape(3, 2)
    values = q.dequantize(blocks.reshape(-1), t)
    out[t.name] = {"bytes": blocks.reshape(-1).tolist(), "values": [float(v) for v in values.reshape(-1)]}
with open(sys.argv[1], "w") as f:
    json.dump(out, f, separators=(",", ":"))

# Quantizing (src/loaders/quantize.ts): float rows and the blocks gguf's quantize makes of them
# (test/fixtures/quant/quantize.json, beside the first output). Blocks of normal values at several scales, zeros,
# exact halves (round away from zero), a scale below f16's smallest subnormal, and large values.
import os

rng = np.random.default_rng(1)
rows = [rng.standard_normal(64).astype(np.float32) * s for s in (0.02, 1.0, 300.0)]
# max |w| = 127 makes d = 1, so w / d is exactly the halves
rows.append(np.concatenate([np.zeros(32), [127.0], np.arange(-16, 15) + 0.5]).astype(np.float32))
rows.append(np.concatenate([rng.standard_normal(32) * 1e4, rng.standard_normal(32) * 1e-7]).astype(np.float32))
x = np.stack([r[:64] for r in rows]).astype(np.float32)
qz = q.quantize(x, T.Q8_0)
with open(os.path.join(os.path.dirname(sys.argv[1]), "quantize.json"), "w") as f:
    json.dump({"rows": x.shape[0], "cols": x.shape[1], "values": [float(v) for v in x.reshape(-1)],
               "Q8_0": qz.reshape(-1).tolist()}, f, separators=(",", ":"))
