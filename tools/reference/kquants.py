"""Quantizers for llama.cpp's K-quant blocks (Q4_K, Q5_K, Q6_K), which the gguf package can dequantize but not write.

Plain round-to-nearest with per-sub-block scales (no search for the best scale as llama.cpp's quantize does): what
matters for the test fixtures is that the bytes are valid blocks, and that is checked by dequantizing them with the
gguf package (`roundtrip`). Bytes are packed by inverting the reshapes of gguf.quants' dequantize_blocks.
"""
import numpy as np
from gguf import GGMLQuantizationType as Q
import gguf.quants as quants

QK_K = 256


def _f16(x):
    return x.astype(np.float16)


def _pack_scales_k4(sc, m):
    """12 bytes of 6-bit scales and mins for 8 sub-blocks (ggml's get_scale_min_k4, inverted): [n, 12]."""
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    return out


def _scale_min(x, levels):
    """Per 32-value sub-block: step and (positive) offset so that x ~ step * q - offset with q in [0, levels]."""
    sub = x.reshape(x.shape[0], 8, 32)
    lo = np.minimum(sub.min(axis=2), 0)
    hi = sub.max(axis=2)
    step = (hi - lo) / levels
    offset = -lo
    d = _f16(step.max(axis=1) / 63).astype(np.float32)
    dmin = _f16(offset.max(axis=1) / 63).astype(np.float32)
    sc = np.clip(np.round(np.divide(step, d[:, None], out=np.zeros_like(step), where=d[:, None] > 0)), 0, 63).astype(np.uint8)
    m = np.clip(np.round(np.divide(offset, dmin[:, None], out=np.zeros_like(offset), where=dmin[:, None] > 0)), 0, 63).astype(np.uint8)
    eff_step = d[:, None] * sc
    eff_off = dmin[:, None] * m
    q = np.round(np.divide(sub + eff_off[:, :, None], eff_step[:, :, None], out=np.zeros_like(sub), where=eff_step[:, :, None] > 0))
    return d, dmin, sc, m, np.clip(q, 0, levels).astype(np.uint8).reshape(x.shape[0], QK_K)


def quantize_q4_k(x):
    d, dmin, sc, m, q = _scale_min(x, 15)
    n = x.shape[0]
    # dequantize: qs [n, 4, 1, 32] >> [0, 4] -> [n, 8, 32]: value 64c + 32h + l is nibble h of byte 32c + l
    q4 = q.reshape(n, 4, 2, 32)
    qs = (q4[:, :, 0, :] | (q4[:, :, 1, :] << 4)).reshape(n, 128)
    return np.concatenate([_f16(d).view(np.uint8).reshape(n, 2), _f16(dmin).view(np.uint8).reshape(n, 2),
                           _pack_scales_k4(sc, m), qs], axis=1)


def quantize_q5_k(x):
    d, dmin, sc, m, q = _scale_min(x, 31)
    n = x.shape[0]
    q4 = (q & 15).reshape(n, 4, 2, 32)
    qs = (q4[:, :, 0, :] | (q4[:, :, 1, :] << 4)).reshape(n, 128)
    # qh [n, 1, 32] >> [0..7] -> [n, 8, 32]: bit j of byte l is the high bit of value 32j + l
    hi = (q >> 4).reshape(n, 8, 32).astype(np.uint8)
    qh = np.zeros((n, 32), dtype=np.uint8)
    for j in range(8):
        qh |= hi[:, j, :] << j
    return np.concatenate([_f16(d).view(np.uint8).reshape(n, 2), _f16(dmin).view(np.uint8).reshape(n, 2),
                           _pack_scales_k4(sc, m), qh, qs], axis=1)


def quantize_q6_k(x):
    n = x.shape[0]
    sub = x.reshape(n, 16, 16)
    step = np.abs(sub).max(axis=2) / 31
    d = _f16(step.max(axis=1) / 127).astype(np.float32)
    sc = np.clip(np.round(np.divide(step, d[:, None], out=np.zeros_like(step), where=d[:, None] > 0)), -128, 127).astype(np.int8)
    eff = d[:, None] * sc
    q = np.round(np.divide(sub, eff[:, :, None], out=np.zeros_like(sub), where=eff[:, :, None] > 0))
    q = (np.clip(q, -32, 31) + 32).astype(np.uint8).reshape(n, QK_K)
    # ql [n, 2, 1, 64] >> [0, 4] -> [n, 8, 32]: value 128h + 64s + p is nibble s of byte 64h + p
    lo = (q & 15).reshape(n, 2, 2, 64)
    ql = (lo[:, :, 0, :] | (lo[:, :, 1, :] << 4)).reshape(n, 128)
    # qh [n, 2, 1, 32] >> [0, 2, 4, 6] -> [n, 8, 32]: bits 2s of byte 32h + l are the top bits of value 128h + 32s + l
    top = (q >> 4).reshape(n, 2, 4, 32)
    qh = (top[:, :, 0, :] | (top[:, :, 1, :] << 2) | (top[:, :, 2, :] << 4) | (top[:, :, 3, :] << 6)).reshape(n, 64)
    return np.concatenate([ql, qh, sc.view(np.uint8), _f16(d).view(np.uint8).reshape(n, 2)], axis=1)


QUANTIZERS = {Q.Q4_K: quantize_q4_k, Q.Q5_K: quantize_q5_k, Q.Q6_K: quantize_q6_k}


def quantize(t, kind):
    """A [rows, columns] float array (columns a multiple of 256) as rows of `kind` blocks: uint8 [rows, bytes]."""
    rows, cols = t.shape
    assert cols % QK_K == 0, f"{kind.name} needs rows of a multiple of {QK_K} values, got {cols}"
    blocks = QUANTIZERS[kind](t.astype(np.float32).reshape(-1, QK_K))
    return blocks.reshape(rows, -1)


def roundtrip(t, kind):
    """The gguf package's dequantization of our blocks, and their relative RMS error against t."""
    back = quants.dequantize(quantize(t, kind), kind).reshape(t.shape)
    return back, float(np.sqrt(np.mean((back - t) ** 2) / np.mean(t ** 2)))
