"""cmcodec: cross-modality image compression (caption + tiny guidance, decoded by text-to-image diffusion).

Public API: ``encode``, ``decode``, ``read_header``, the errors, ``__version__``. Importing this package
never imports torch; neural backends load lazily when a model is used.
"""

from __future__ import annotations

from ._version import __version__
from .bitstream import Header, Limits, read_header
from .errors import (
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

__all__ = [
    "BudgetError",
    "CmcodecError",
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
    "read_header",
]


def __getattr__(name: str):  # PEP 562: keep codec (and its optional imports) lazy
    if name in ("encode", "decode"):
        from . import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'cmcodec' has no attribute {name!r}")
