"""Guidance signals: the coarse pixel map (spec §7) and the low-rate image reference (spec §8).

Never calls a diffusion model: it turns images into section payloads and payloads back into images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from . import arith, ids, refcodecs
from .bitstream import BitWriter, Section
from .errors import CodecUnavailableError, ConfigError, GuidanceDecodeError, LimitError
from .refcodecs import AV1_PAD, padded_size

# --- pixel map (spec §7) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PixelParams:
    """Pixel-map settings written in the payload's first byte."""

    block: int = 64  # block side in original pixels: 8 << k, k in 0..7
    bits: int = 5  # luma quantiser bits, 1..8
    chroma_drop: int = 1  # chroma bits = bits - chroma_drop; 3 means no chroma (grey map)

    def __post_init__(self) -> None:
        k = self.block.bit_length() - 4
        if self.block != 8 << k or not 0 <= k <= 7:
            raise ConfigError(f"pixel-map block must be 8, 16, ..., 1024; found {self.block}")
        if not 1 <= self.bits <= 8:
            raise ConfigError(f"pixel-map bits must be 1..8; found {self.bits}")
        if not 0 <= self.chroma_drop <= 3 or (self.chroma_drop < 3 and self.bits - self.chroma_drop < 1):
            raise ConfigError(f"pixel-map chroma_drop {self.chroma_drop} invalid for {self.bits} bits")

    @property
    def byte(self) -> int:
        """The payload's parameter byte (spec §7.1)."""
        return ((self.block.bit_length() - 4) << 5) | ((self.bits - 1) << 2) | self.chroma_drop

    @classmethod
    def from_byte(cls, b: int) -> PixelParams:
        """Parse the parameter byte."""
        try:
            return cls(block=8 << (b >> 5), bits=((b >> 2) & 7) + 1, chroma_drop=b & 3)
        except ConfigError as e:
            raise GuidanceDecodeError(f"corrupt pixel map: {e}") from None


MAX_MAP_CELLS = 16384  # spec §7.2: at most 128 x 128 cells (decoding three planes of that takes 0.25 s here)


def grid_size(width: int, height: int, block: int, check: bool = True) -> tuple[int, int]:
    """Grid of the pixel map: one cell per started block; more than MAX_MAP_CELLS is a LimitError (if check)."""
    gw, gh = -(-width // block), -(-height // block)
    if check and gw * gh > MAX_MAP_CELLS:
        raise LimitError(f"pixel map of {gw}x{gh} cells ({width}x{height} px in {block}-px blocks): expected at "
                         f"most {MAX_MAP_CELLS} cells; use a larger block")
    return gw, gh


def _plane_bits(p: PixelParams) -> list[int]:
    """Bits of the Y, Cb, Cr planes (chroma absent when chroma_drop is 3)."""
    if p.chroma_drop == 3:
        return [p.bits]
    return [p.bits, p.bits - p.chroma_drop, p.bits - p.chroma_drop]


def _med(q: np.ndarray, y: int, x: int) -> int:
    """Median edge detector prediction (JPEG-LS) from left, top and top-left neighbours."""
    if y == 0 and x == 0:
        return -1  # first cell: predicted from the middle level (see _predict)
    if y == 0:
        return int(q[y, x - 1])
    if x == 0:
        return int(q[y - 1, x])
    a, b, c = int(q[y, x - 1]), int(q[y - 1, x]), int(q[y - 1, x - 1])
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c


def _cells(image: Image.Image, width: int, height: int, block: int) -> np.ndarray:
    """Mean YCbCr of each block (area average), shape (gh, gw, 3), floats 0..255. One row of blocks at a time,
    summed as integers (exact, so the same means as any order of summation): the working set is a band of
    block rows, not a float copy of the image (spec §9.1 bounds an encoder's memory too)."""
    gw, gh = grid_size(width, height, block)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    out = np.empty((gh, gw, 3), dtype=np.float64)
    for gy in range(gh):
        y0, y1 = gy * block, min(height, (gy + 1) * block)
        band = np.asarray(rgb.crop((0, y0, width, y1)).convert("YCbCr"))
        band = np.pad(band, ((0, block - (y1 - y0)), (0, gw * block - width), (0, 0)), mode="edge")
        sums = band.reshape(block, gw, block, 3).sum(axis=(0, 2), dtype=np.int64)
        out[gy] = sums / (block * block)
    return out


def encode_pixel_map(image: Image.Image, params: PixelParams = PixelParams()) -> bytes:
    """Pixel-map payload: parameter byte + arithmetic-coded MED residuals of the quantised cells."""
    width, height = image.size
    cells = _cells(image, width, height, params.block)
    enc = arith.Encoder()
    for c, bits in enumerate(_plane_bits(params)):
        levels = 1 << bits
        q = np.clip(np.floor(cells[..., c] * levels / 256.0), 0, levels - 1).astype(np.int64)
        _code_plane(q, levels, enc=enc)
    return bytes([params.byte]) + enc.finish()


def _code_plane(
    q: np.ndarray, levels: int, *, enc: arith.Encoder | None = None, dec: arith.Decoder | None = None
) -> None:
    """Code (enc) or fill in (dec) one plane of quantised cells, raster order, residual mod levels."""
    model = arith.AdaptiveModel(levels, inc=32, limit=1 << 12, init=_residual_prior(levels))
    gh, gw = q.shape
    for y in range(gh):
        for x in range(gw):
            pred = _med(q, y, x)
            if pred < 0:
                pred = levels // 2
            if enc is not None:
                model.encode(enc, int((q[y, x] - pred) % levels))
            else:
                q[y, x] = (pred + model.decode(dec)) % levels


def _residual_prior(levels: int) -> list[int]:
    """Initial counts favouring small residuals (integer, symmetric around 0 mod levels)."""
    out = []
    for r in range(levels):
        d = min(r, levels - r)
        out.append(max(1, 16 >> min(d, 4)))
    return out


def pixel_map_section(image: Image.Image, params: PixelParams = PixelParams()) -> Section:
    """The pixel-map section (coder pmap1) of encode_pixel_map's payload."""
    return Section(ids.SECTION_IDS["pixel_map"], ids.coder_id("pixel_map", "pmap1"), encode_pixel_map(image, params))


def decode_pixel_map(payload: bytes, width: int, height: int) -> tuple[PixelParams, np.ndarray]:
    """Decode a pixel-map payload to its grid, uint8 YCbCr of shape (gh, gw, 3). The work is the grid's
    cell count (bounded before decoding, spec §7.2), whatever the payload's length (spec §6.4)."""
    if not payload:
        raise GuidanceDecodeError("corrupt pixel map: expected a parameter byte, found an empty section")
    params = PixelParams.from_byte(payload[0])
    gw, gh = grid_size(width, height, params.block)
    dec = arith.Decoder(payload[1:])
    grid = np.full((gh, gw, 3), 128, dtype=np.uint8)
    for c, bits in enumerate(_plane_bits(params)):
        levels = 1 << bits
        q = np.zeros((gh, gw), dtype=np.int64)
        _code_plane(q, levels, dec=dec)
        grid[..., c] = np.clip((q * 256 + 128) // levels, 0, 255).astype(np.uint8)  # mid-rise reconstruction
    return params, grid


# Rendering works in horizontal strips (spec §9.1): the whole output (the file's size, within the decode budget
# of core.limits) is the one full-size buffer, besides, with cells so large that neighbouring strips read the
# same grid rows, those rows resized once and shared; each strip is resampled from the part of the source it needs
# (Pillow's resize box keeps the filter taps outside the box, so a strip equals those rows of a whole-image
# resize) and blurred with margins wide enough that its rows equal those of a whole-image blur.
_BOX_PAD = 8  # grid rows a strip's resize box takes beyond the rows it needs
STRIP_PIXELS = 1 << 22  # pixels of a strip's working set beyond its margins (16 MiB as Pillow holds RGB)


def _blur_margin(radius: float) -> int:
    """Rows a Gaussian blur of this radius reaches: Pillow runs three box blurs of at most radius + 1 each."""
    return 3 * (math.ceil(radius) + 2) if radius > 0 else 0


def _strips(width: int, height: int, margin: int) -> list[tuple[int, int]]:
    """Row ranges [y0, y1) covering height, each about STRIP_PIXELS pixels and never thinner than its margin."""
    rows = max(64, 4 * margin, STRIP_PIXELS // max(1, width))  # margins cost at most half the strip again
    return [(y, min(height, y + rows)) for y in range(0, height, rows)]


def render_pixel_map(grid: np.ndarray, params: PixelParams, width: int, height: int,
                     upsample: str = "bicubic", smooth: float = 0.0) -> Image.Image:
    """Upsample a decoded grid to the original size: cell centres on block centres (spec §7.4), strip by strip
    (exactly the pixels of resizing the whole grid to grid * block, cropping to width x height, blurring)."""
    gh, gw, _ = grid.shape
    block = params.block
    small = Image.fromarray(grid, "YCbCr").convert("RGB")
    radius = smooth * block if smooth > 0 else 0.0
    margin = _blur_margin(radius)
    out = Image.new("RGB", (width, height))
    resized: tuple[tuple[int, int], Image.Image] | None = None
    for y0, y1 in _strips(width, height, margin):
        # the rows the blur of [y0, y1) reads, and the grid rows their resize reads (the box is in whole cells,
        # so its filter taps are the whole-image resize's)
        a, b = max(0, y0 - margin), min(height, y1 + margin)
        # whole grid rows around them, with _BOX_PAD rows more each side: Pillow computes a box of very few rows
        # differently (1 in 256 off), never one this wide
        s0, s1 = max(0, a // block - _BOX_PAD), min(gh, -(-b // block) + _BOX_PAD)
        if resized is None or resized[0] != (s0, s1):  # with large blocks every strip's box is the whole grid:
            # resized once (the same call, so the same pixels), not once per strip
            resized = (s0, s1), small.resize((gw * block, (s1 - s0) * block), _RESAMPLE[upsample],
                                             box=(0, s0, gw, s1))
        part = resized[1].crop((0, a - s0 * block, width, b - s0 * block))
        if radius:
            part = part.filter(ImageFilter.GaussianBlur(radius))
        out.paste(part.crop((0, y0 - a, width, y1 - a)), (0, y0))
    return out


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

# --- image reference (spec §8) -----------------------------------------------------------------------

MIN_REF_SIDE = 8


def ref_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """Reference size for a long side: aspect kept, even sides, at least 8 (spec §8.2, integer math)."""
    m = max(width, height)
    long_side = min(long_side, m + (m & 1))

    def side(s: int) -> int:
        return max(MIN_REF_SIDE, 2 * ((s * long_side + m) // (2 * m)))

    return side(width), side(height)


# spec §8: the image-reference coders are the rows of the codec table with an image-reference id
RefCodec = refcodecs.RefCodec
REF_CODECS: dict[str, RefCodec] = refcodecs.REF_CODECS
AV1S_ID = ids.coder_id("image_ref", "av1s")  # spec §8.3: av1 with the sequence header rebuilt by the decoder
HEVCS_ID = ids.coder_id("image_ref", "hevcs")  # spec §8.3: hevc with its parameter sets rebuilt by the decoder

# AV1 levels (Annex A): seq_level_idx -> (MaxPicSize, MaxHSize, MaxVSize)
_AV1_LEVELS = ((0, 147456, 2048, 1152), (1, 278784, 2816, 1584), (4, 665856, 4352, 2448),
               (5, 1065024, 5504, 3096), (8, 2359296, 6144, 3456), (12, 8912896, 8192, 4352),
               (16, 35651584, 16384, 8704))


def av1_still_sequence_header(w: int, h: int) -> bytes:
    """The sequence header OBU that spec §8.3 rebuilds for a w x h still picture (reduced still header)."""
    from .bitstream import BitWriter

    level = next((i for i, size, mh, mv in _AV1_LEVELS if w * h <= size and w <= mh and h <= mv), 31)
    wb, hb = max(1, (w - 1).bit_length()), max(1, (h - 1).bit_length())
    bw = BitWriter()
    bw.u(0, 3)  # seq_profile
    bw.u(1, 1)  # still_picture
    bw.u(1, 1)  # reduced_still_picture_header
    bw.u(level, 5)
    bw.u(wb - 1, 4)
    bw.u(hb - 1, 4)
    bw.u(w - 1, wb)
    bw.u(h - 1, hb)
    # use_128x128_superblock 0, enable_filter_intra 1, enable_intra_edge_filter 0, enable_superres 0,
    # enable_cdef 1, enable_restoration (1 when both sides are at least 64); color_config: high_bitdepth 0,
    # mono_chrome 0, no color description, color_range 0, chroma_sample_position 0, separate_uv_delta_q 0;
    # film_grain_params_present 0; trailing one bit
    for bit in (0, 1, 0, 0, 1, int(min(w, h) >= 64), 0, 0, 0, 0, 0, 0, 0, 0, 1):
        bw.u(bit, 1)
    payload = bw.to_bytes()
    return bytes([0x0A, len(payload)]) + payload  # OBU header (type 1, has_size), leb128 size < 128


# HEVC levels (H.265 Table A.8): (general_level_idc, MaxLumaPs, MaxLumaSr)
_HEVC_LEVELS = ((30, 36864, 552960), (60, 122880, 3686400), (63, 245760, 7372800), (90, 552960, 16588800),
                (93, 983040, 33177600), (120, 2228224, 66846720), (123, 2228224, 133693440),
                (150, 8912896, 267386880), (153, 8912896, 534773760), (156, 8912896, 1069547520),
                (180, 35651584, 1069547520), (183, 35651584, 2139095040), (186, 35651584, 4278190080))
_HEVC_FPS = 25  # the frame rate the encoder declares (VUI timing) and levels are chosen for


def _hevc_level(w: int, h: int) -> int:
    """The lowest level whose picture size, sample rate at 25 fps and side limit hold w x h (255 if none)."""
    for idc, max_ps, max_sr in _HEVC_LEVELS:
        side = math.isqrt(max_ps * 8)
        if w * h <= max_ps and w * h * _HEVC_FPS <= max_sr and w <= side and h <= side:
            return idc
    return 255


def _hevc_nal(nal_type: int, bw: BitWriter) -> bytes:
    """Annex-B NAL unit (4-byte start code) of an RBSP: stop bit, alignment, emulation prevention (7.4.2)."""
    bw.u(1, 1)  # rbsp_stop_one_bit
    while len(bw.bits) % 8:
        bw.u(0, 1)
    out = bytearray([nal_type << 1, 1])  # nuh_layer_id 0, nuh_temporal_id_plus1 1
    zeros = 0
    for b in bw.to_bytes():
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return b"\x00\x00\x00\x01" + bytes(out)


def hevc_parameter_sets(w: int, h: int) -> bytes:
    """VPS, SPS and PPS that spec §8.3 rebuilds for a w x h `hevcs` picture (x265's all-intra settings)."""
    cw, ch = (w + 7) // 8 * 8, (h + 7) // 8 * 8  # coded size: multiples of the 8x8 minimum coding block
    level = _hevc_level(cw, ch)
    ctu = 64
    while ctu > min(w, h) and ctu > 16:
        ctu //= 2
    log2_ctu = ctu.bit_length() - 1
    wpp = -(-cw // ctu) >= 3 and -(-ch // ctu) >= 2

    def ptl(bw: BitWriter) -> None:
        """profile_tier_level: format range extensions (4), Main Intra constraint flags, the level."""
        bw.u(0, 2), bw.u(0, 1), bw.u(4, 5), bw.u(1 << 27, 32)  # space, tier, profile 4, compatible with 4
        bw.u(1, 1), bw.u(0, 1), bw.u(0, 1), bw.u(1, 1)  # progressive, not interlaced, packed, frame only
        bw.u(0x7D400000000, 43)  # max_12/10/8bit, max_422/420chroma, intra, lower_bit_rate; the rest 0
        bw.u(0, 1), bw.u(level, 8)

    def se(bw: BitWriter, v: int) -> None:
        bw.ue(2 * v - 1 if v > 0 else -2 * v)

    vps = BitWriter()
    vps.u(0, 4), vps.u(1, 1), vps.u(1, 1), vps.u(0, 6), vps.u(0, 3), vps.u(1, 1), vps.u(0xFFFF, 16)
    ptl(vps)
    vps.u(1, 1), vps.ue(2), vps.ue(0), vps.ue(1)  # ordering info: 3 pictures buffered, no reorder
    vps.u(0, 6), vps.ue(0), vps.u(0, 1), vps.u(0, 1)  # max_layer_id, one layer set, no timing, no extension
    sps = BitWriter()
    sps.u(0, 4), sps.u(0, 3), sps.u(1, 1)
    ptl(sps)
    sps.ue(0), sps.ue(1), sps.ue(cw), sps.ue(ch)  # sps id, 4:2:0, coded size
    sps.u(int((cw, ch) != (w, h)), 1)
    if (cw, ch) != (w, h):  # conformance window in chroma samples: right and bottom
        sps.ue(0), sps.ue((cw - w) // 2), sps.ue(0), sps.ue((ch - h) // 2)
    sps.ue(0), sps.ue(0), sps.ue(4)  # 8-bit luma and chroma, log2_max_pic_order_cnt_lsb 8
    sps.u(1, 1), sps.ue(2), sps.ue(0), sps.ue(1)
    sps.ue(0), sps.ue(log2_ctu - 3), sps.ue(0), sps.ue(min(log2_ctu, 5) - 2)  # CB 8..CTU, TB 4..min(CTU, 32)
    sps.ue(0), sps.ue(0), sps.u(0, 1)  # transform hierarchy depths, no scaling lists
    sps.u(0, 1), sps.u(1, 1), sps.u(0, 1)  # no AMP, SAO, no PCM
    sps.ue(0), sps.u(0, 1), sps.u(1, 1), sps.u(1, 1)  # no short/long-term RPS, TMVP, strong intra smoothing
    sps.u(1, 1)  # VUI: video_format 5 (unspecified), limited range, timing 1/25 s, nothing else
    sps.u(0, 1), sps.u(0, 1), sps.u(1, 1), sps.u(5, 3), sps.u(0, 1), sps.u(0, 1), sps.u(0, 1)
    sps.u(0, 1), sps.u(0, 1), sps.u(0, 1), sps.u(0, 1)
    sps.u(1, 1), sps.u(1, 32), sps.u(_HEVC_FPS, 32), sps.u(0, 1), sps.u(0, 1), sps.u(0, 1)
    sps.u(0, 1)  # no SPS extension
    pps = BitWriter()
    pps.ue(0), pps.ue(0), pps.u(0, 1), pps.u(0, 1), pps.u(0, 3), pps.u(1, 1), pps.u(0, 1)  # sign data hiding
    pps.ue(0), pps.ue(0), se(pps, 0), pps.u(0, 1), pps.u(0, 1)  # init_qp 26
    pps.u(1, 1), pps.ue(max(0, log2_ctu - 5))  # cu_qp_delta on 32x32 quantisation groups
    se(pps, 0), se(pps, 0), pps.u(0, 1), pps.u(0, 1), pps.u(0, 1), pps.u(0, 1), pps.u(0, 1)
    pps.u(int(wpp), 1), pps.u(1, 1), pps.u(0, 1), pps.u(0, 1), pps.u(0, 1), pps.ue(0), pps.u(0, 1), pps.u(0, 1)
    return _hevc_nal(32, vps) + _hevc_nal(33, sps) + _hevc_nal(34, pps)


def default_ref_codec() -> RefCodec:
    """The first usable codec in order of preference: AV1, HEVC, JPEG 2000."""
    reasons = []
    for name in ("av1", "hevc", "j2k"):
        why = REF_CODECS[name].available()
        if why is None:
            return REF_CODECS[name]
        reasons.append(f"{name}: {why}")
    raise CodecUnavailableError("no image-reference codec is usable: " + "; ".join(reasons))


_AV1_TD = b"\x12\x00"  # AV1 temporal delimiter OBU: rebuilt by the decoder (spec §8.3)


def _bounded(name: str, args: tuple, codec: str, n_bytes: int, pixels: int) -> Image.Image:
    """A reference decode in the worker under its deadline (spec §9.1); a corrupt stream is a
    GuidanceDecodeError naming the decoder's complaint."""
    try:
        return refcodecs.bounded_decode(name, args, n_bytes, pixels)
    except ValueError as e:
        raise GuidanceDecodeError(f"corrupt image reference: {codec} decoder failed ({e})") from None


def _codec_encode(img: Image.Image, codec: RefCodec, q: int) -> bytes:
    """Encode with a reference codec's spec §8 options and strip what spec §8.3 lets the decoder rebuild."""
    data = codec.encode(img, q, refcodecs.REF_EFFORT)
    if codec.name == "av1" and data.startswith(_AV1_TD):
        return data[2:]
    return data


def _codec_decode(data: bytes, codec: str, want: tuple[int, int] | None = None) -> Image.Image:
    """Inverse of _codec_encode; a picture that is not ``want`` pixels in size is refused before decoding."""
    # coded sizes round up to 8x8 (HEVC) or 64x64 (AV1 superblocks) before cropping
    max_pixels = (want[0] + 64) * (want[1] + 64) if want else 4096 * 4096
    if codec == "av1":
        return _bounded("av", (_AV1_TD + data, "av1", max_pixels), codec, len(data), max_pixels)
    if codec in ("hevc", "vvc"):
        return _bounded("av", (data, codec, max_pixels), codec, len(data), max_pixels)
    if codec == "j2k":
        return _bounded("j2k", (data, want), "JPEG 2000", len(data), max_pixels)
    raise GuidanceDecodeError(f"image-reference codec {codec} cannot be decoded by this reader")


def image_ref_section(image: Image.Image, codec: RefCodec, long_side: int, q: int) -> Section:
    """The image-reference section: for AV1 (HEVC), coder av1s (hevcs) without the sequence header
    (parameter sets) when the decoder's rebuild of it (spec §8.3) equals what the encoder wrote, else av1
    (hevc) with it; other codecs carry their stream as encode_image_ref makes it."""
    sid = ids.SECTION_IDS["image_ref"]
    payload = encode_image_ref(image, codec, long_side, q)
    if codec.name == "hevc":
        ps = hevc_parameter_sets(*ref_size(*image.size, long_side))
        if payload[1:].startswith(ps):
            return Section(sid, HEVCS_ID, payload[:1] + payload[1 + len(ps):])
    if codec.name != "av1":
        return Section(sid, codec.ref_id, payload)
    w, h = padded_size(*ref_size(*image.size, long_side), *AV1_PAD)
    seq = av1_still_sequence_header(w, h)
    if payload[1:].startswith(seq):
        return Section(sid, AV1S_ID, payload[:1] + payload[1 + len(seq):])
    return Section(sid, codec.ref_id, payload)


def encode_image_ref(image: Image.Image, codec: RefCodec, long_side: int, q: int) -> bytes:
    """Image-reference payload: long-side byte (spec §8.1) + the codec stream of the downscaled image."""
    if not 8 <= long_side <= 2040 or long_side % 8:
        raise ConfigError(f"reference long side must be a multiple of 8 in 8..2040; found {long_side}")
    w, h = image.size
    small = image.convert("RGB").resize(ref_size(w, h, long_side), Image.Resampling.LANCZOS)
    return bytes([long_side // 8]) + _codec_encode(small, codec, q)


def decode_image_ref(payload: bytes, coder_id: int, width: int, height: int) -> Image.Image:
    """Decode an image-reference payload to the downscaled reference image."""
    if len(payload) < 2 or payload[0] == 0:
        raise GuidanceDecodeError("corrupt image reference: expected a long-side byte and a codec stream")
    name = ids.IMAGE_CODERS[coder_id]
    want = ref_size(width, height, payload[0] * 8)
    stream = payload[1:]
    if name == "av1s":  # spec §8.3: the sequence header of the padded reference size, rebuilt
        name, stream = "av1", av1_still_sequence_header(*padded_size(*want, *AV1_PAD)) + stream
    elif name == "hevcs":  # spec §8.3: the parameter sets of the reference size, rebuilt
        name, stream = "hevc", hevc_parameter_sets(*want) + stream
    img = _codec_decode(stream, name, want)
    if name == "av1" and img.size == padded_size(*want, *AV1_PAD):  # spec §8.3: padded, cropped back here
        img = img.crop((0, 0, *want))
    if img.size != want:
        raise GuidanceDecodeError(f"corrupt image reference: expected a {want[0]}x{want[1]} picture, "
                                  f"found {img.size[0]}x{img.size[1]}")
    return img


def render_image_ref(ref: Image.Image, width: int, height: int, upsample: str = "lanczos",
                     smooth: float = 0.0) -> Image.Image:
    """Upscale a decoded reference to the original size. Pillow's resize holds the output and an intermediate
    of the reference's height only; a smoothing blur runs in strips with margins (spec §9.1 bounds)."""
    out = ref.resize((width, height), _RESAMPLE[upsample])
    if smooth <= 0:
        return out
    radius = smooth * width / ref.size[0]
    margin = _blur_margin(radius)
    blurred = Image.new("RGB", (width, height))
    for y0, y1 in _strips(width, height, margin):
        a, b = max(0, y0 - margin), min(height, y1 + margin)
        part = out.crop((0, a, width, b)).filter(ImageFilter.GaussianBlur(radius))
        blurred.paste(part.crop((0, y0 - a, width, y1 - a)), (0, y0))
    return blurred
