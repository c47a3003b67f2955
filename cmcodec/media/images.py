"""Reading and normalising input images: every odd input is converted correctly or rejected clearly."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..core.bitstream import DEFAULT_LIMITS, Limits
from ..core.errors import ImageInputError, LimitError
from ..core.limits import check_image
from .fileio import describe


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    """Scale integer or float samples to uint8 by their type's range."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        hi = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8)
    if arr.dtype in (np.uint16, np.int32, np.uint32, np.int64) or arr.max(initial=0) > 255:
        return np.clip((arr.astype(np.int64) + 128) // 257, 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _flatten(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_to_8bit(np.asarray(img)), "L").convert("RGB")
    if (img.mode == "P" and "transparency" in img.info) or img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if img.mode in ("La", "RGBa"):  # premultiplied alpha (in-memory images only): Pillow converts it to "LA" only
        return _flatten(img.convert("LA" if img.mode == "La" else "RGBA"))
    # CMYK needs nothing more: Pillow's JPEG reader already takes every CMYK and YCCK JPEG in Adobe's inverted
    # polarity (its "CMYK;I" raw mode), so inverting again here would turn red into cyan
    return img if img.mode == "RGB" else img.convert("RGB")  # convert would copy an RGB picture


# Colour: decoders generate sRGB and metrics compare sRGB values, so an input whose embedded ICC profile
# describes another colour space (Adobe RGB, Display P3, a CMYK press profile, a grey gamma) is converted to
# sRGB through littlecms (Pillow's ImageCms), perceptual intent. A profile that maps colours to themselves
# within one level (an sRGB profile, whatever its maker) leaves the pixels as stored; an unreadable or
# unusable profile too, as a browser does.
_CMS_MODES = {"RGB": ("RGB", "RGB"), "RGBA": ("RGB", "RGBA"), "L": ("GRAY", "RGB"), "CMYK": ("CMYK", "RGB")}
_PROBE = np.stack(np.meshgrid(*[np.arange(0, 256, 17, dtype=np.uint8)] * 3, indexing="ij"), -1).reshape(64, 64, 3)


def _to_srgb(img: Image.Image) -> Image.Image:
    """img in sRGB when it carries an ICC profile of another colour space (see above); else img itself."""
    icc = img.info.get("icc_profile")
    if not icc:
        return img
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without littlecms
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = src.profile.xcolor_space.strip()
        if img.mode not in _CMS_MODES or _CMS_MODES[img.mode][0] != space:
            return img  # a profile of another colour space than the pixels': it does not describe them
        if space == "RGB" and _maps_onto_itself(icc):
            return img
        return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode=_CMS_MODES[img.mode][1])
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return img


_SRGB_LIKE: dict[bytes, bool] = {}  # a profile's SHA-256 -> _maps_onto_itself (at most 64 kept)


def _maps_onto_itself(icc: bytes) -> bool:
    """Whether an RGB profile maps every colour of a probe grid to sRGB within one level (an sRGB profile).
    Remembered by the profile's digest: most photographs carry one of a few sRGB profiles, and the test costs
    a transform (a fifth of the time to read a 768x512 PNG)."""
    from PIL import ImageCms

    key = hashlib.sha256(icc).digest()
    if key in _SRGB_LIKE:
        return _SRGB_LIKE[key]
    probe = Image.fromarray(_PROBE, "RGB")
    mapped = ImageCms.profileToProfile(probe, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                       ImageCms.createProfile("sRGB"), outputMode="RGB")
    if len(_SRGB_LIKE) >= 64:
        _SRGB_LIKE.clear()
    _SRGB_LIKE[key] = int(np.abs(np.asarray(mapped, np.int16) - _PROBE).max()) <= 1
    return _SRGB_LIKE[key]


def load_image(src: object, limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    """An input (path, bytes, PIL image or HxW[xC] array) as an upright 8-bit RGB PIL image."""
    name = str(src) if isinstance(src, (str, os.PathLike)) else type(src).__name__
    if isinstance(src, np.ndarray):
        arr = src
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ImageInputError(f"array input: expected HxW, HxWx3 or HxWx4, found shape {arr.shape}")
        arr = _to_8bit(arr)
        img = Image.fromarray(arr, "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA"))
    elif isinstance(src, Image.Image):
        img = src
    else:
        data: bytes | Path
        if isinstance(src, (bytes, bytearray)):
            data = bytes(src)
        elif isinstance(src, (str, os.PathLike)):
            data = Path(src)
            if not data.is_file():  # a FIFO or a device (/dev/zero) is refused before it is opened: never ends
                raise ImageInputError(f"{name}: expected an image file, found {describe(data)}")
        else:
            raise ImageInputError(f"expected an image path, bytes, PIL image or array, found {type(src).__name__}")
        try:
            img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
            _check_size(name, img.size, limits)  # from the header, before any pixel is decoded
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                raise ImageInputError(f"{name}: animated image with {n_frames} frames; cmcodec codes still "
                                      "images (extract one frame first)")
            img.load()
        except Image.DecompressionBombError as e:  # only with limits raised above Pillow's process-wide guard,
            # which is the application's setting: cmcodec never changes it (core.limits)
            raise LimitError(f"{name}: image exceeds Pillow's pixel limit ({e}); raise PIL.Image.MAX_IMAGE_PIXELS "
                             "as well to read it") from None
        except UnidentifiedImageError:
            raise ImageInputError(f"{name}: not an image file Pillow can read") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageInputError(f"{name}: unreadable or truncated image ({e})") from None
    try:  # only a picture that needs turning is copied (exif_transpose copies every other one)
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            img = ImageOps.exif_transpose(img) or img
    except Exception:  # a broken EXIF block must not stop an otherwise readable image
        pass
    _check_size(name, img.size, limits)
    out = _flatten(_to_srgb(img))
    if "icc_profile" in out.info:  # the values are sRGB now: a profile kept would be embedded by Pillow's PNG
        # and AVIF writers (an anchor codec's file, a bpp counting its bytes), and describe the input's space
        out = out.copy() if out is src else out  # never the caller's own image
        del out.info["icc_profile"]
    return out


def _check_size(name: str, size: tuple[int, int], limits: Limits) -> None:
    """Refuse an image without pixels or beyond the limits (spec §3's reader limits apply to inputs too)."""
    w, h = size
    if w < 1 or h < 1:
        raise ImageInputError(f"{name}: image has no pixels ({w}x{h})")
    if w > limits.max_width or h > limits.max_height or w * h > limits.max_pixels:
        raise LimitError(f"{name}: image {w}x{h} exceeds the limits ({limits.max_width}x{limits.max_height}, "
                         f"{limits.max_pixels} pixels)")
    check_image(w, h, limits, name)  # the budget of an image held in memory (core.limits)


def split_readable(paths: list[Path], limits: Limits = DEFAULT_LIMITS) -> tuple[list[Path], dict[Path, str]]:
    """The paths whose images load (in their order) and, for each other one, why it does not: a benchmark
    over a folder leaves an unreadable image out and goes on with the rest (each image is decoded once
    here, so a truncated file is found before any work is spent on it)."""
    ok, failed = [], {}
    for p in paths:
        try:
            load_image(p, limits)
        except (ImageInputError, LimitError) as e:
            failed[p] = str(e)
        else:
            ok.append(p)
    return ok, failed
