"""cmcodec: cross-modality image compression (caption + tiny guidance, decoded by text-to-image diffusion).

Public API: ``encode`` (bytes) and ``encode_result`` (an ``EncodeResult``: the bytes with the mode and caption
chosen), both tuned by ``EncodeOptions``; ``decode`` tuned by ``DecodeOptions``; ``read_header``; the errors;
``__version__``; ``plugin_options`` for the Pillow plugin that importing this package registers
(``Image.open`` / ``Image.save`` of ``.cmc``; cmcodec.pillow_plugin, loaded on the first .cmc Pillow opens or
saves). Importing this package never imports
torch; neural backends load lazily when a model is used.

Data flow (spec/bitstream.md is the normative description of every byte)::

    encode: image -> media.images (orient, RGB, limits)
              -> models.i2t caption -> core.textcode ------------------> caption section
              -> core.guidance pixel map / image reference (core.refcodecs) -> guidance section
              codec: rate control fits --bpp / --max-bytes, core.bitstream packs header + sections
    decode: bytes -> core.bitstream.read_header (no torch, exact) -> sections
              -> core.textcode prompt, core.guidance init image
              -> core.profiles[profile id], the row's pipeline for the mode:
                 model-free (classic): core.classic upsamples the guidance (no model, core alone)
                 else models.t2i runs the row (text2img / img2img) -> image at (w, h)

Layers, each importing only those listed after it: ``cli`` -> ``bench`` (baselines' sweeps, metrics, rd,
evaluate, fuzzing) -> ``codec`` (orchestration, rate control; ``runs``: folder runs; ``distributed``) ->
``models`` (how to run a row: loading, i2t, t2i families) -> ``media`` (image loading, atomic files) -> ``core``
(the normative decoder: ids, errors, limits, bit I/O, container, caption coders, pixel map, image reference and
the conventional codecs it wraps, the decoder profile table, the model-free classic decoder). The
conventional-codec wrappers sit in ``core`` because decoding an image-reference section is normative.
"""

from __future__ import annotations

from typing import Any

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


def _register_pillow(plugin: Any = None) -> None:
    """Image.open / Image.save know .cmc once cmcodec is imported: the one place the format is registered.

    Without ``plugin`` the entry points are factories that load cmcodec.pillow_plugin when Pillow first opens,
    decodes or saves a .cmc (Pillow calls a factory, not necessarily a class), so a program that only calls
    cmcodec.decode loads no plugin code; pillow_plugin.register() passes itself to put its classes in the same
    places."""
    from PIL import Image

    from .core import bitstream

    def load() -> Any:
        from . import pillow_plugin

        return pillow_plugin

    fmt = bitstream.FORMAT_NAME
    Image.register_open(fmt, plugin.CmcImageFile if plugin else lambda fp, filename: load().CmcImageFile(fp, filename),
                        bitstream.has_magic)
    Image.register_save(fmt, plugin._save if plugin else lambda im, fp, filename: load()._save(im, fp, filename))
    Image.register_extension(fmt, bitstream.EXTENSION)
    Image.register_mime(fmt, bitstream.MIME)
    Image.register_decoder("cmc", plugin.CmcDecoder if plugin else lambda mode, *args: load().CmcDecoder(mode, *args))


_register_pillow()

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
    if name == "plugin_options":
        from .pillow_plugin import plugin_options

        return plugin_options
    raise AttributeError(f"module 'cmcodec' has no attribute {name!r}")
