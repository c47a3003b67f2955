"""The classic decoder (profile id 1, spec §4.4): no model; a file decodes to its guidance upsampled to the
coded size (spec §7.4, §8.3), with the filter and smoothing of its mode.

It needs nothing beyond the bitstream, so a classic file decodes with ``core`` alone: no profile rows, no model
code. ``models.profiles`` builds the classic row's modes from ``RENDER``, and the guidance of a neural mode
(its img2img start) is rendered by ``guidance_image`` with that row's own filter and smoothing.
"""

from __future__ import annotations

from PIL import Image

from . import bitstream, guidance, ids, textcode
from .errors import ProfileError

PROFILE_ID = 1
NAME = "classic"
if ids.PROFILE_NAMES[PROFILE_ID] != NAME:  # registry consistency at import (spec §4.4)
    raise RuntimeError(f"core.ids.PROFILE_NAMES[{PROFILE_ID}] is not {NAME!r}")

# mode: (upsample filter, Gaussian smoothing radius in output pixels per guidance pixel). Part of the profile's
# definition: a changed entry changes decoded pixels and needs a new profile id (spec §4.4). Text mode has no
# guidance to show, so this decoder refuses it.
RENDER: dict[str, tuple[str, float]] = {
    "pixel": ("bicubic", 0.35),
    "image": ("lanczos", 0.0),
    "full": ("lanczos", 0.0),
}


def guidance_image(header: bitstream.Header, upsample: str, smooth: float) -> Image.Image | None:
    """The guidance image at the original size (pixel map or reference), or None when the file has none."""
    pm = header.section("pixel_map")
    if pm is not None:
        params, grid = guidance.decode_pixel_map(pm.payload, header.width, header.height)
        return guidance.render_pixel_map(grid, params, header.width, header.height, upsample, smooth)
    ref = header.section("image_ref")
    if ref is not None:
        small = guidance.decode_image_ref(ref.payload, ref.coder_id, header.width, header.height)
        return guidance.render_image_ref(small, header.width, header.height, upsample, smooth)
    return None


def decode(header: bitstream.Header, max_caption_chars: int) -> Image.Image:
    """Decode a classic file whose header has been read: its caption is checked (as every decoder checks the
    sections it reads), not shown."""
    if header.profile_id != PROFILE_ID:
        raise ProfileError(f"the classic decoder got a file of profile {header.profile_name}")
    if header.mode not in RENDER:
        raise ProfileError.cannot_decode(NAME, header.mode, tuple(RENDER), neural=False)
    sec = header.section("caption")
    if sec is not None:
        textcode.decode(sec.payload, sec.coder_id, max_caption_chars)
    out = guidance_image(header, *RENDER[header.mode])
    if out is None:  # the reader implies guidance for these modes (spec §4.2); a bug if not
        raise RuntimeError(f"{header.mode}-mode file without guidance passed the reader")
    return out
