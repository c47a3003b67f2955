"""Stable ids written into .cmc files (spec/bitstream.md §4). Ids never change and are never reused."""

from __future__ import annotations

from .errors import UnknownCoderError

# spec §3: mode, u(2)
MODE_IDS: dict[str, int] = {"text": 0, "pixel": 1, "image": 2, "full": 3}
MODE_NAMES: dict[int, str] = {v: k for k, v in MODE_IDS.items()}

# spec §4.1: section types
SECTION_IDS: dict[str, int] = {"caption": 0, "pixel_map": 1, "image_ref": 2, "noise": 3}
SECTION_TYPES: dict[int, str] = {v: k for k, v in SECTION_IDS.items()}

# spec §4.2: sections each mode implies, in payload order (the caption is last where present)
MODE_SECTIONS: dict[str, tuple[int, ...]] = {
    "text": (0,),
    "pixel": (1, 0),
    "image": (2,),
    "full": (2, 0),
    "noise": (0, 3),
}

# spec §4.2: modes written as a header mode plus required extra sections of their own (§4.5), first among the
# extra sections: (header mode, own section types). A version-1 reader that predates them refuses such a file
# by the required flag, naming the section type.
SECTION_MODES: dict[str, tuple[str, tuple[int, ...]]] = {"noise": ("text", (3,))}
MODES: tuple[str, ...] = (*MODE_IDS, *SECTION_MODES)

# spec §4.3: coder ids per section type
CAPTION_CODERS: dict[int, str] = {0: "wlm1", 1: "brotli", 2: "utf8", 3: "wlm2"}
PIXEL_CODERS: dict[int, str] = {0: "pmap1"}
IMAGE_CODERS: dict[int, str] = {0: "av1", 1: "hevc", 2: "j2k", 3: "vvc", 4: "av1s", 5: "hevcs"}
NOISE_CODERS: dict[int, str] = {0: "tddcm1"}  # spec §10.5
SECTION_CODERS: dict[str, dict[int, str]] = {
    "caption": CAPTION_CODERS,
    "pixel_map": PIXEL_CODERS,
    "image_ref": IMAGE_CODERS,
    "noise": NOISE_CODERS,
}


def coder_id(section: str, name: str) -> int:
    """Id of a coder by name within a section type."""
    for k, v in SECTION_CODERS[section].items():
        if v == name:
            return k
    raise UnknownCoderError(f"unknown {section} coder {name!r}: expected one of "
                            f"{', '.join(SECTION_CODERS[section].values())}")

# file suffixes that folder runs (encode, rd-curve, evaluate) pick up
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".avif",
                  ".heic", ".jxl", ".jp2", ".tga"}
