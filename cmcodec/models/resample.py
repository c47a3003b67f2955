"""Pillow's Lanczos resize of 8-bit images, bit for bit, as tensor arithmetic on the model's device.

A decoded batch is resized to each file's own size (spec: the decoder output has the original size) before
its bytes cross to the CPU. Pillow's resampler (libImaging/Resample.c) is separable: a horizontal pass, its
result rounded to 8 bits, then a vertical pass. Each output sample is a sum of input samples times integer
weights (the normalized filter taps in 22-bit fixed point), plus half, shifted right by 22 bits and clipped
to 0..255. Here each pass is one matrix product in float64: every product is an integer below 2**31 and
every partial sum below 2**34, exact in float64's 53-bit mantissa whatever order the product sums in, so
the result equals Pillow's on any device. The taps are computed in Python floats (C doubles) in the order
Pillow's C code computes them, with the C library's sin, as Pillow does.

Which pass comes first depends on the Pillow release (12.x always resizes horizontally first; 13.0 starts
with the vertical pass for some sizes), so the order is not assumed: ``pass_order`` resizes a random probe
of each size pair with the installed Pillow once and keeps the order whose result equals it bit for bit,
or none, in which case the caller resizes with Pillow itself.
"""

from __future__ import annotations

import functools
import math
from typing import Any

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit samples
LANCZOS_SUPPORT = 3.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


@functools.lru_cache(maxsize=64)
def lanczos_taps(in_size: int, out_size: int) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """(first input index, integer weights) of each output sample, as Pillow computes them for a whole-image
    resize from in_size to out_size samples."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filterscale
    ss = 1.0 / filterscale
    one = 1 << PRECISION_BITS
    rows = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for v in w:  # plain left-to-right sum, as the C loop (Python's sum() compensates)
            ww += v
        if ww != 0.0:
            w = [v / ww for v in w]
        rows.append((xmin, tuple(int(-0.5 + v * one) if v < 0 else int(0.5 + v * one) for v in w)))
    return tuple(rows)


@functools.lru_cache(maxsize=32)
def _matrix_on(in_size: int, out_size: int, device: str) -> Any:
    """(out_size, in_size) float64 matrix of the integer weights, on device (built once per size pair)."""
    import torch

    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i, (start, ks) in enumerate(lanczos_taps(in_size, out_size)):
        m[i, start:start + len(ks)] = torch.tensor(ks, dtype=torch.float64)
    return m.to(device)


def _matrix(in_size: int, out_size: int, torch: Any, device: Any) -> Any:
    return _matrix_on(in_size, out_size, str(device))


def _round(acc: Any, torch: Any) -> Any:
    """Pillow's rounding of a fixed-point sum to 8 bits: add half, shift right (floor), clip."""
    return torch.floor((acc + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp_(0, 255)


def _passes(x: Any, size: tuple[int, int], order: str, torch: Any) -> Any:
    """float64 NHWC x resized by the two passes in order ("hv": horizontal first, "vh": vertical first)."""
    out_w, out_h = size
    for p in order:
        n, h, w, c = x.shape
        if p == "h" and out_w != w:
            m = _matrix(w, out_w, torch, x.device)
            x = _round(torch.matmul(x.transpose(2, 3), m.T), torch).transpose(2, 3)
        elif p == "v" and out_h != h:
            m = _matrix(h, out_h, torch, x.device)
            x = _round(torch.matmul(m, x.reshape(n, h, w * c)), torch).reshape(n, out_h, w, c)
    return x


@functools.lru_cache(maxsize=256)
def pass_order(in_size: tuple[int, int], out_size: tuple[int, int]) -> str | None:
    """The pass order ("hv" or "vh") whose result is the installed Pillow's Lanczos resize of a random probe
    image from in_size to out_size, bit for bit; None when neither is."""
    import numpy as np
    import torch
    from PIL import Image

    (w, h), (ow, oh) = in_size, out_size
    probe = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(probe).resize((ow, oh), Image.Resampling.LANCZOS))
    x = torch.from_numpy(probe)[None].to(torch.float64)
    for order in ("hv", "vh"):
        if np.array_equal(_passes(x, out_size, order, torch)[0].to(torch.uint8).numpy(), ref):
            return order
    return None


def resize_lanczos(images: Any, size: tuple[int, int]) -> Any | None:
    """NHWC uint8 tensor resized to size (width, height) on the tensor's device, each image's pixels those of
    the installed Pillow's ``Image.resize(size, Image.Resampling.LANCZOS)``; None when this Pillow resizes
    that size pair in a way not reproduced here (then resize with Pillow)."""
    import torch

    _, h, w, _ = images.shape
    if tuple(size) == (w, h):
        return images
    order = pass_order((w, h), tuple(size))
    if order is None:
        return None
    return _passes(images.to(torch.float64), tuple(size), order, torch).to(torch.uint8)
