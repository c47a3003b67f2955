"""cmcodec: cross-modality image compression (caption + tiny guidance, decoded by text-to-image diffusion).

Public API: ``encode`` (bytes) and ``encode_result`` (an ``EncodeResult``: the bytes with the mode and caption
chosen), both tuned by ``EncodeOptions``; ``decode`` tuned by ``DecodeOptions``; ``read_header``; the errors;
``__version__``; ``plugin_options`` for the Pillow plugin that importing this package registers
(``Image.open`` / ``Image.save`` of ``.cmc``; cmcodec.pillow_plugin). Importing this package never imports
torch; neural backends load lazily when a model is used.

Data flow (spec/bitstream.md is the normative description of every byte)::

    encode: image -> media.images (orient, RGB, limits)
              -> models.i2t caption -> core.textcode ------------------> caption section
              -> core.guidance pixel map / image reference (core.refcodecs) -> guidance section
              codec: rate control fits --bpp / --max-bytes, core.bitstream packs header + sections
    decode: bytes -> core.bitstream.read_header (no torch, exact) -> sections
              -> core.textcode prompt, core.guidance init image
              -> models.profiles[profile id] -> models.t2i (text2img / img2img) -> image at (w, h)

Layers, each importing only those listed after it:
``cli`` -> ``bench`` (baselines' sweeps, metrics, rd, evaluate, fuzzing) -> ``codec`` (orchestration,
rate control; ``distributed``) -> ``models`` (profiles, loading, i2t, t2i) -> ``media`` (image loading,
atomic files) -> ``core`` (the normative decoder: ids, errors, limits, bit I/O, container, caption
coders, pixel map, image reference and the conventional codecs it wraps). The conventional-codec wrappers
sit in ``core`` because decoding an image-reference section is normative.
"""

from __future__ import annotations

from ._version import __version__
from .core.bitstream import Header, Limits, read_header
from .core.errors import (
    BudgetError,
    CmcodecError,
    FormatError,
    ImageInputError,
    IntegrityError,
    LimitError,
    ModelError,
    NotCmcError,
    ProfileError,
    TruncatedError,
    UnknownSectionError,
    UnsupportedVersionError,
)
from .pillow_plugin import plugin_options, register

register()  # Image.open / Image.save know .cmc once cmcodec is imported (cmcodec.pillow_plugin)

__all__ = [
    "BudgetError",
    "CmcodecError",
    "DecodeOptions",
    "EncodeOptions",
    "EncodeResult",
    "FormatError",
    "Header",
    "ImageInputError",
    "IntegrityError",
    "LimitError",
    "Limits",
    "ModelError",
    "NotCmcError",
    "ProfileError",
    "TruncatedError",
    "UnknownSectionError",
    "UnsupportedVersionError",
    "__version__",
    "decode",
    "encode",
    "encode_result",
    "plugin_options",
    "read_header",
]


def __getattr__(name: str):  # PEP 562: keep codec (and its optional imports) lazy
    if name in ("encode", "encode_result", "decode", "EncodeOptions", "DecodeOptions", "EncodeResult"):
        from . import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'cmcodec' has no attribute {name!r}")
