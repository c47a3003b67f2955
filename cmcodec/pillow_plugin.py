"""Pillow plugin: ``.cmc`` files open, load and save where images do (Pillow's own plugin conventions).

``import cmcodec`` registers the format ``"CMC"`` (extension ``.cmc``, MIME ``image/x-cmc``; this module loads
when Pillow first opens or saves one)::

    from PIL import Image
    import cmcodec

    im = Image.open("photo.cmc")      # reads the header only: size, mode "RGB", info; no model, no torch
    im.info["profile"], im.info["mode"], im.info["bpp"], im.info["caption"]
    im.load()                          # decodes with the profile named in the file (the T2I model for neural ones)
    im.save("photo.cmc", format="CMC", mode="pixel", bpp=0.01, caption="...")  # cmcodec.encode

Model and device settings cannot travel through ``Image.open``; they are set once with
``cmcodec.plugin_options(device=..., dtype=..., model_path=..., vae_path=..., i2t=...)`` (any field of
``codec.DecodeOptions`` or ``codec.EncodeOptions``; ``device`` applies to both).

Errors: a file not starting with the .cmc magic byte is not claimed (``_accept``), so Pillow raises its
``UnidentifiedImageError``. A file that claims to be .cmc but is broken, and a decode or encode that fails,
raise the cmcodec error with its message; the class raised is also an ``OSError``, the error Pillow's
callers catch (``except OSError`` and ``except cmcodec.FormatError`` both work).

Layer: this module sits at the orchestration layer (it reads the header through ``core`` and decodes and
encodes through ``codec``); ``codec`` is imported only when pixels are asked for, so opening imports no torch.
``import cmcodec`` registers entry points that load this module on first use, so a program that only calls
``cmcodec.decode`` loads no plugin code.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import IO, Any

from PIL import Image, ImageFile

from .core import bitstream, textcode
from .core.errors import CmcodecError, ConfigError
from .core.limits import DEFAULT_LIMITS, check_image

FORMAT, EXTENSION, MIME = bitstream.FORMAT_NAME, bitstream.EXTENSION, bitstream.MIME
MAX_FILE_BYTES = DEFAULT_LIMITS.max_file_bytes  # the reader's file limit: header read once, whole

# save() keywords passed to cmcodec.encode (everything else of the encoder goes through plugin_options)
SAVE_KEYWORDS = ("mode", "caption", "bpp", "max_bytes", "profile", "seed")

# a tile is ImageFile._Tile from Pillow 11 on, a plain tuple before
_tile: Any = getattr(ImageFile, "_Tile", lambda *fields: tuple(fields))
_options: dict[str, Any] = {"decode": None, "encode": None}
_error_classes: dict[type, type] = {}


def plugin_options(**fields: Any) -> tuple[Any, Any]:
    """Set the decoder and encoder options the plugin uses from now on; returns (DecodeOptions, EncodeOptions).

    Keywords are fields of ``codec.DecodeOptions`` (device, model_path, dtype, vae_path, accel, limits) and of
    ``codec.EncodeOptions`` (i2t, caption_words, ref_codec, ...); a keyword both have (device, accel, limits)
    sets both. Called without keywords it resets both to their defaults. Unknown keywords raise ConfigError.
    """
    from .codec import DecodeOptions, EncodeOptions

    dec_names = {f.name for f in dataclasses.fields(DecodeOptions)}
    enc_names = {f.name for f in dataclasses.fields(EncodeOptions)}
    unknown = sorted(set(fields) - dec_names - enc_names)
    if unknown:
        raise ConfigError(f"unknown plugin option(s) {', '.join(unknown)}: expected some of "
                          f"{', '.join(sorted(dec_names | enc_names))}")
    dec = DecodeOptions(**{k: v for k, v in fields.items() if k in dec_names})
    enc = EncodeOptions(**{k: v for k, v in fields.items() if k in enc_names})
    _options.update(decode=dec, encode=enc)
    return dec, enc


def _pillow_error(e: CmcodecError) -> CmcodecError:
    """The same error as a class that is also an OSError (what Pillow raises and its callers catch)."""
    cls = type(e)
    if isinstance(e, OSError):
        return e
    if cls not in _error_classes:
        _error_classes[cls] = type(cls.__name__, (cls, OSError), {"__module__": cls.__module__,
                                                                "__doc__": cls.__doc__})
    out = _error_classes[cls](str(e))
    out.__cause__ = e
    return out


def _accept(prefix: bytes) -> bool:
    """A .cmc file starts with the magic byte 0xCC (spec §2)."""
    return bitstream.has_magic(prefix)


class CmcImageFile(ImageFile.ImageFile):
    """A .cmc file: the header is read at open; the pixels are made by the decoder on load()."""

    format = FORMAT
    format_description = "cmcodec cross-modality compressed image"

    def _open(self) -> None:
        if self.fp is None:
            raise SyntaxError("not a .cmc file: no file object")
        data = self.fp.read(MAX_FILE_BYTES + 1)
        if not _accept(data):
            raise SyntaxError("not a .cmc file")
        if len(data) > MAX_FILE_BYTES:
            raise _pillow_error(ConfigError(f"file of more than {MAX_FILE_BYTES} bytes exceeds the .cmc input "
                                            "limit"))
        dec = _options["decode"]
        limits = dec.limits if dec is not None else bitstream.DEFAULT_LIMITS
        try:
            h = bitstream.read_header(data, limits)
            # the decode budget (spec §9.1) refuses at open, as Pillow's own guard does for other formats
            check_image(h.width, h.height, limits, "decoded image")
        except CmcodecError as e:
            raise _pillow_error(e) from None
        caption = None
        for s in h.sections:
            if s.name == "caption":
                try:
                    caption = textcode.decode(s.payload, s.coder_id)
                except CmcodecError as e:
                    raise _pillow_error(e) from None
        self._mode = "RGB"
        self._size = (h.width, h.height)
        self.info.update({"profile": h.profile_name, "profile_id": h.profile_id, "mode": h.mode, "bpp": h.bpp,
                          "caption": caption, "seed": h.seed, "cmc_version": h.version, "bytes": h.file_size,
                          "sections": [s.name for s in h.sections]})
        self.tile = [_tile("cmc", (0, 0, *self._size), 0, None)]


class CmcDecoder(ImageFile.PyDecoder):
    """Pulls the whole file and decodes it with cmcodec.decode and the plugin's DecodeOptions."""

    _pulls_fd = True

    def decode(self, buffer: bytes) -> tuple[int, int]:  # type: ignore[override]
        from . import codec

        if self.fd is None:
            raise _pillow_error(ConfigError("the .cmc decoder got no file to read"))
        self.fd.seek(0)
        data = self.fd.read(MAX_FILE_BYTES + 1)
        try:
            img = codec.decode(data, _options["decode"])
        except CmcodecError as e:
            raise _pillow_error(e) from None
        want = (self.state.xsize, self.state.ysize)
        if img.size != want or img.mode != "RGB":  # the decoder's contract (spec §6: output at the coded size)
            raise _pillow_error(CmcodecError(f"decoder returned a {img.mode} image of {img.size}, expected RGB "
                                             f"{want}"))
        self.set_as_raw(img.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Image.save(..., format="CMC", mode=, caption=, bpp=, max_bytes=, profile=, seed=) via cmcodec.encode."""
    from . import codec

    params = dict(im.encoderinfo)
    unknown = sorted(set(params) - set(SAVE_KEYWORDS))
    if unknown:
        raise _pillow_error(ConfigError(f"unknown CMC save option(s) {', '.join(unknown)}: expected some of "
                                        f"{', '.join(SAVE_KEYWORDS)} (model settings: cmcodec.plugin_options)"))
    try:
        data = codec.encode(im, **params, options=_options["encode"])
    except CmcodecError as e:
        raise _pillow_error(e) from None
    fp.write(data)


def register() -> None:
    """Register the format with Pillow's classes of this module (``import cmcodec`` registers the same entry
    points lazily, loading this module on the first .cmc opened or saved; calling it again changes nothing)."""
    import cmcodec

    cmcodec._register_pillow(sys.modules[__name__])


__all__ = ["EXTENSION", "FORMAT", "MIME", "CmcImageFile", "plugin_options", "register"]
