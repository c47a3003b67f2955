"""Sweep-side parts of the conventional codecs (the rows themselves are ``core.refcodecs.CODECS``): scales,
the cached per-(image, scale) encoder, and the search for the setting whose file is closest to a target.

An encoder that fails at one setting (VVenC refuses QP 1..6 on small pictures, e.g. kodim01 at 96x64)
makes that setting unusable for that picture: the search skips it and goes on with the others. Only a
picture on which every setting fails is an error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from ..core import refcodecs
from ..core.errors import CmcodecError, CodecUnavailableError

SCALES = {"1": 1, "1/2": 2, "1/4": 4, "1/8": 8}  # side divisors: code small, upscale back with Lanczos
REACH = 1.1  # a target counts as reached when the closest file is within 10% of it (in either direction)


def downscale(img: Image.Image, k: int) -> Image.Image:
    """The picture a curve at scale 1/k codes (Lanczos, sides rounded, at least 2)."""
    w, h = img.size
    return img if k == 1 else img.resize((max(2, round(w / k)), max(2, round(h / k))), Image.LANCZOS)


class SettingFailed(CmcodecError):
    """The encoder failed at one setting (that setting is unusable for this picture)."""


@dataclass
class Encoded:
    """One picture coded at one setting."""

    data: bytes
    seconds: float


@dataclass
class CodedPicture:
    """A codec on one picture: each setting coded at most once (the cache of an (image, scale) pair);
    settings that fail are remembered with the encoder's message."""

    codec: refcodecs.RefCodec
    picture: Image.Image
    effort: str = "best"
    done: dict[int, Encoded] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def size(self, q: int) -> int:
        """Bytes at setting q; SettingFailed when the encoder fails there."""
        if q in self.failed:
            raise SettingFailed(self.failed[q])
        if q not in self.done:
            t0 = time.perf_counter()
            try:
                data = self.codec.encode(self.picture, q, self.effort)
            except CodecUnavailableError as e:
                self.failed[q] = str(e)
                raise SettingFailed(str(e)) from None
            self.done[q] = Encoded(data, time.perf_counter() - t0)
        return len(self.done[q].data)


def find_setting(size_of: Callable[[int], int], settings: list[int], target_bytes: float,
                 start: int | None = None) -> int | None:
    """Setting (from settings ordered small to large files) whose size is closest to target_bytes, or None when
    the target lies outside the reachable sizes (below the smallest or above the largest by more than 10%).

    The search starts at ``start`` (a predicted setting) or at the smallest file (rd targets are low rates,
    and small files are the cheapest to code), steps outward by doubling until the target is bracketed,
    then bisects; a setting whose encode raises SettingFailed is dropped from the
    list and the search goes on without it (a size_of that caches makes repeated probes free).
    """
    usable = list(settings)
    while usable:
        try:
            return _search(size_of, usable, target_bytes, start)
        except _Dropped as d:
            usable.remove(d.setting)
    return None


class _Dropped(Exception):
    """A setting failed during the search (internal)."""

    def __init__(self, setting: int) -> None:
        self.setting = setting


def _search(size_of: Callable[[int], int], settings: list[int], target: float, start: int | None) -> int | None:
    """find_setting over settings that have not failed so far."""

    def size(i: int) -> int:
        try:
            return size_of(settings[i])
        except SettingFailed:
            raise _Dropped(settings[i]) from None

    n = len(settings)
    i = settings.index(start) if start in settings else 0  # no prediction: from the smallest (cheapest) file up
    lo, hi = -1, n  # invariant (as far as sizes are monotonic): size(lo) <= target < size(hi); -1, n: virtual
    step = 1
    while hi - lo > 1:
        if size(i) <= target:
            lo = i
            if hi == n:  # gallop up
                i = min(n - 1, lo + step)
                step *= 2
                if lo == n - 1:
                    break
                continue
        else:
            hi = i
            if lo == -1:  # gallop down
                i = max(0, hi - step)
                step *= 2
                if hi == 0:
                    break
                continue
        i = (lo + hi) // 2
    if lo == -1:  # even the smallest file is larger than the target
        return settings[0] if size(0) <= target * REACH else None
    if hi == n:  # even the largest file is smaller
        return settings[-1] if size(n - 1) >= target / REACH else None
    best = min((lo, hi), key=lambda j: abs(math.log(max(size(j), 1) / target)))
    return settings[best]
