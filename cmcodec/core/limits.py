"""Limits of the normative decoder and of the images cmcodec holds, each with its reason (spec §3, §9.1).

Two kinds. The constants are fixed by the spec. ``Limits`` holds what a caller may lower (or raise, for input
it trusts): what a header may declare (read before anything is allocated), and the decode cost budget: the
pixels of any image cmcodec materialises (a decoded output, an encode input), checked from the header or the
image file's own header before a pixel is allocated. Nothing here changes a process-wide setting of a library
(Pillow's ``MAX_IMAGE_PIXELS`` stays the caller's): a caller raises a limit by passing its own ``Limits``
(``DecodeOptions(limits=...)``, ``EncodeOptions(limits=...)``, ``cmcodec.plugin_options(limits=...)``), the
command line by ``$CMCODEC_LIMITS`` (``limits_from_env``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError, LimitError

# spec §6.1: a decoded caption has at most 4096 characters. Captions of CMC-Bench's captioners are tens of
# words; the cap bounds a reader's work and memory for any caption payload, whatever its coder.
MAX_CAPTION_CHARS = 4096

# UTF-8 takes at most 4 bytes per character (RFC 3629): the byte bound of a caption within the limit above.
MAX_CAPTION_BYTES = 4 * MAX_CAPTION_CHARS

# spec §9.1: the decoded picture of a default decoder. 2**26 pixels (8192 x 8192) is 192 MiB of RGB samples
# (256 MiB as Pillow holds RGB, four bytes a pixel); with strip-wise upsampling (core.guidance) a classic
# decode of any file stays under 1 GiB and about 10 CPU-seconds here (benchmarks/results/fuzz_forged.json),
# where the 16384 x 16384 a header may declare took 36 s and 4.2 GiB. Pillow's own guard warns from
# 89,478,485 pixels, so at this default it never interferes with an encode input.
MAX_IMAGE_PIXELS = 1 << 25

# spec §9.1: seconds a reference stream's native decoder (§8.3) may run, plus 1 s per 100 kB of stream and per
# megapixel of its picture (core.refcodecs.ref_deadline). Decoding the largest reference (2040 x 2040) takes
# well under a second of CPU here; the margin is for a machine shared by several test suites at once.
REF_DEADLINE_S = 10.0

# what $CMCODEC_LIMITS may set: NAME=INTEGER pairs, comma-separated (the fields of Limits)
ENV_LIMITS = "CMCODEC_LIMITS"


@dataclass(frozen=True)
class Limits:
    """Reader limits, checked before anything is allocated (spec §3, §9.1); raise them for trusted input only.

    max_width, max_height, max_pixels, max_section_bytes, max_file_bytes: what a header may declare and a file
    may hold (reading, ``info``). max_image_pixels: the decode cost budget, the pixels of an image this process
    materialises (a decoded output at the file's size, an encode input), at about 4 bytes each plus strips.
    max_caption_chars: spec §6.1 caps it; a reader may lower it.
    """

    max_width: int = 16384
    max_height: int = 16384
    max_pixels: int = 16384 * 16384
    max_section_bytes: int = 16 * 1024 * 1024
    max_file_bytes: int = 64 * 1024 * 1024
    max_caption_chars: int = MAX_CAPTION_CHARS
    max_image_pixels: int = MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"limit {f.name} must be a positive integer; found {v!r}")
        if self.max_caption_chars > MAX_CAPTION_CHARS:
            raise ConfigError(f"limit max_caption_chars may lower spec §6.1's {MAX_CAPTION_CHARS}, not raise it; "
                              f"found {self.max_caption_chars}")


DEFAULT_LIMITS = Limits()


def check_image(width: int, height: int, limits: Limits, what: str) -> None:
    """Refuse an image of width x height pixels beyond the decode cost budget (max_image_pixels), before any of
    its pixels is allocated; ``what`` names it in the message (a file, "decoded image")."""
    if width * height > limits.max_image_pixels:
        raise LimitError(
            f"{what}: {width}x{height} is {width * height} pixels, above the limit of {limits.max_image_pixels} "
            f"(max_image_pixels; raise it with Limits(max_image_pixels=...) or ${ENV_LIMITS}="
            f"max_image_pixels=N for input you trust)")


def limits_from_env(environ: Mapping[str, str] | None = None, base: Limits = DEFAULT_LIMITS) -> Limits:
    """``base`` with the fields that $CMCODEC_LIMITS sets (``max_image_pixels=300000000,max_file_bytes=...``);
    a malformed value is a one-line ConfigError naming what was expected."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_LIMITS, "").strip()
    if not text:
        return base
    names = [f.name for f in dataclasses.fields(Limits)]
    changes: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in names:
            raise ConfigError(f"${ENV_LIMITS}: expected NAME=INTEGER pairs with NAME one of {', '.join(names)}; "
                              f"found {part.strip()!r}")
        if not value.isascii() or not value.isdigit() or len(value) > 20:
            raise ConfigError(f"${ENV_LIMITS}: {name} must be a positive integer; found {value!r}")
        changes[name] = int(value)
    return dataclasses.replace(base, **changes)
