"""The model-free decoder (spec §4.4): a file whose profile row decodes its mode with a pipeline of
core.profiles.MODEL_FREE (the ``classic`` row's) decodes to its guidance upsampled to the coded size (spec §7.4,
§8.3), with the filter and smoothing of that row's mode.

It needs nothing beyond the bitstream and the row, so such a file decodes with ``core`` alone: no model code.
The guidance of a neural mode (its img2img start) is rendered by ``guidance_image`` with that row's own filter
and smoothing.
"""

from __future__ import annotations

from PIL import Image

from . import bitstream, guidance, textcode
from .limits import Limits, check_image
from .profiles import MODEL_FREE, ModeConfig


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


def decode(header: bitstream.Header, mc: ModeConfig, limits: Limits) -> Image.Image:
    """Decode a file whose header has been read, with its row's settings for its mode (a model-free
    pipeline): its output size is checked against the decode budget (spec §9.1) before anything is decoded,
    its caption is checked (as every decoder checks the sections it reads), not shown."""
    if mc.pipeline not in MODEL_FREE:  # codec.decode dispatches on the pipeline; a bug if not
        raise RuntimeError(f"core.classic got a {mc.pipeline.value} mode")
    check_image(header.width, header.height, limits, "decoded image")
    sec = header.section("caption")
    if sec is not None:
        textcode.decode(sec.payload, sec.coder_id, limits.max_caption_chars)
    out = guidance_image(header, mc.upsample, mc.smooth)
    if out is None:  # a model-free row decodes only modes with guidance
        raise RuntimeError(f"{header.mode}-mode file without guidance reached the model-free decoder")
    return out
