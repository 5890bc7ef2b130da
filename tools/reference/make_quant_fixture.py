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
