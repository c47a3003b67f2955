"""Guidance: pixel map exact on its grid, image references for each codec, size rules."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PARROTS
from PIL import Image

from cmcodec.core import guidance
from cmcodec.core.errors import ConfigError, GuidanceDecodeError


@pytest.mark.parametrize("block,bits,drop", [(8, 8, 0), (16, 6, 2), (64, 5, 2), (64, 3, 3), (1024, 1, 0)])
def test_pixel_map_roundtrip_is_exact_on_the_grid(block: int, bits: int, drop: int) -> None:
    img = Image.open(PARROTS)
    p = guidance.PixelParams(block, bits, drop)
    data = guidance.encode_pixel_map(img, p)
    p2, grid = guidance.decode_pixel_map(data, *img.size)
    assert p2 == p
    cells = guidance._cells(img, *img.size, block)
    levels = 1 << bits
    q = np.clip(np.floor(cells[..., 0] * levels / 256.0), 0, levels - 1)
    assert np.array_equal(grid[..., 0], ((q * 256 + 128) // levels).astype(np.uint8))
    out = guidance.render_pixel_map(grid, p2, *img.size)
    assert out.size == img.size


@pytest.mark.parametrize("grey,bits", [(128, 6), (0, 6), (255, 3)])
def test_flat_pixel_map_decodes_although_its_stream_is_all_dropped_zeros(grey: int, bits: int) -> None:
    # A flat image codes every residual as 0, which the arithmetic coder writes as zero bits; the encoder drops
    # trailing zero bytes, so the decoder reads far more bits past the end than the payload holds. That is a
    # valid stream (spec §6.4): a reader that refused it by its overrun refused files its own encoder wrote.
    img = Image.new("RGB", (1024, 1024), (grey,) * 3)
    p = guidance.PixelParams(8, bits, 0)
    data = guidance.encode_pixel_map(img, p)
    assert len(data) <= 5  # 128 x 128 cells, three planes
    _, grid = guidance.decode_pixel_map(data, 1024, 1024)
    levels = 1 << bits
    want = (grey * levels // 256 * 256 + 128) // levels
    assert grid.shape == (128, 128, 3) and (grid[..., 0] == want).all()


def test_pixel_map_is_cheaper_than_8_bits_per_block() -> None:
    img = Image.open(PARROTS).resize((768, 512))  # a 12 x 8 grid of 64-px blocks
    data = guidance.encode_pixel_map(img, guidance.PixelParams(64, 5, 2))
    assert len(data) * 8 < 8 * 12 * 8  # CMC-Bench spends about 8 bits per block


def test_pixel_params_validation() -> None:
    with pytest.raises(ConfigError):
        guidance.PixelParams(48, 5, 2)
    with pytest.raises(GuidanceDecodeError):
        guidance.decode_pixel_map(b"", 10, 10)


@pytest.mark.parametrize("w,h,L,expect", [(768, 512, 192, (192, 128)), (512, 768, 64, (42, 64)),
                                          (1, 1, 8, (8, 8)), (100, 7, 2040, (100, 8))])
def test_ref_size(w: int, h: int, L: int, expect: tuple[int, int]) -> None:
    assert guidance.ref_size(w, h, L) == expect


@pytest.mark.parametrize("codec", ["av1", "hevc", "j2k", "vvc"])
def test_image_ref_roundtrip(codec: str) -> None:
    rc = guidance.REF_CODECS[codec]
    if rc.available():
        pytest.skip(rc.available())
    img = Image.open(PARROTS)
    data = guidance.encode_image_ref(img, rc, 96, rc.ref_quality[1] if codec != "j2k" else 50)
    ref = guidance.decode_image_ref(data, rc.ref_id, *img.size)
    assert ref.size == guidance.ref_size(*img.size, 96)
    diff = np.abs(np.asarray(ref.resize(img.size), dtype=int) - np.asarray(img, dtype=int)).mean()
    assert diff < 40  # a real picture of the input, not noise
    with pytest.raises(GuidanceDecodeError):
        guidance.decode_image_ref(data[:1] + bytes(len(data) - 1), rc.ref_id, *img.size)


def test_av1_temporal_delimiter_is_stripped() -> None:
    rc = guidance.REF_CODECS["av1"]
    data = guidance.encode_image_ref(Image.open(PARROTS), rc, 64, 63)
    assert not data[1:].startswith(b"\x12\x00")


def test_av1_small_pictures_do_not_hang_and_decode_at_the_reference_size() -> None:
    # SVT-AV1 hung on a 16x66 picture; encoders pad to multiples of 8, at least 32 (spec §8.3)
    import subprocess
    import sys

    code = ("from PIL import Image; import numpy as np; from cmcodec.core import guidance\n"
            "img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (660, 160, 3), dtype=np.uint8))\n"
            "rc = guidance.REF_CODECS['av1']\n"
            "for long_side in (64, 96, 136, 264):\n"
            "    data = guidance.encode_image_ref(img, rc, long_side, 50)\n"
            "    ref = guidance.decode_image_ref(data, rc.ref_id, 160, 660)\n"
            "    assert ref.size == guidance.ref_size(160, 660, data[0] * 8), ref.size\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("name", "stripped_id", "saved"), [("av1", guidance.AV1S_ID, 8),
                                                             ("hevc", guidance.HEVCS_ID, 75)])
def test_stripped_headers_are_rebuilt_exactly(name: str, stripped_id: int, saved: int) -> None:
    # spec §8.3: av1s rebuilds the sequence header, hevcs the parameter sets
    img = Image.open(PARROTS)
    rc = guidance.REF_CODECS[name]
    full = guidance.encode_image_ref(img, rc, 192, 40)
    sec = guidance.image_ref_section(img, rc, 192, 40)
    cid, stripped = sec.coder_id, sec.payload
    assert cid == stripped_id and len(full) - len(stripped) >= saved
    a = guidance.decode_image_ref(full, rc.ref_id, *img.size)
    b = guidance.decode_image_ref(stripped, cid, *img.size)
    assert a.size == b.size == img.size and np.array_equal(np.asarray(a), np.asarray(b))


def test_av1_keeps_a_header_the_rule_does_not_rebuild() -> None:
    img = Image.open(PARROTS)
    rc = guidance.REF_CODECS["av1"]
    # a small reference whose header the rule does not rebuild keeps it (coder av1): still decodable
    sec = guidance.image_ref_section(img, rc, 32, 63)
    cid_small, small = sec.coder_id, sec.payload
    assert guidance.decode_image_ref(small, cid_small, *img.size).size == guidance.ref_size(*img.size, 32)


@pytest.mark.parametrize("size", [(16, 16), (66, 16), (16, 66), (34, 18), (64, 66), (96, 64), (130, 66),
                                  (200, 136), (60, 1338), (1116, 26), (1024, 680)])
def test_hevc_parameter_set_rebuild_matches_x265(size: tuple[int, int]) -> None:
    # spec §8.3: the rebuild covers the CTU size, level, conformance window and wavefront choices of x265
    from cmcodec.core.refcodecs import av_encode

    img = Image.open(PARROTS).convert("RGB").resize(size)
    for q in (20, 51):
        assert av_encode(img, "hevc", q).startswith(guidance.hevc_parameter_sets(*size))


# sha256 of the decoded reference pixels (RGB, row-major) of each golden file with an image reference:
# the codec table may be reorganised, but the normative decode of a file never changes (spec §8)
GOLDEN_REF_PIXELS = {
    "full_hevc_realvis.cmc": (1, (128, 86), "69563d1a580cbef44a3c2c23382173b9e46ec492fa5cb842ee689ed4aaa4cde4"),
    "full_j2k.cmc": (2, (80, 54), "db70c521c0cb16f824795d7d022a65276e148454f69a67168a331fe88e255bd1"),
    "image_av1_classic.cmc": (0, (40, 26), "2e0b034385748bce3234a2cb9ac5a728643dfef1bb29aa094b569b841be93f27"),
    "image_av1s_classic.cmc": (4, (192, 128), "b3bbeca9dd8ddf47414d80f10a2a6ecc4655a60755f806319f0f330c92b9cbff"),
    "image_hevcs_classic.cmc": (5, (192, 128), "646930dbb7fd0aa7efee270dd9081a3c21c9af7180acefdb29eee4e2df50e51b"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_REF_PIXELS))
def test_golden_image_references_decode_to_the_same_pixels(name: str) -> None:
    import hashlib

    from conftest import GOLDEN

    from cmcodec.core.bitstream import read_header

    h = read_header((GOLDEN / name).read_bytes())
    (s,) = [s for s in h.sections if s.name == "image_ref"]
    coder, size, digest = GOLDEN_REF_PIXELS[name]
    img = guidance.decode_image_ref(s.payload, s.coder_id, h.width, h.height)
    assert (s.coder_id, img.size) == (coder, size)
    assert hashlib.sha256(np.asarray(img.convert("RGB")).tobytes()).hexdigest() == digest


def test_image_reference_coders_are_rows_of_the_one_codec_table() -> None:
    from cmcodec.core import ids, refcodecs

    assert {n: refcodecs.CODECS[n] for n in ("j2k", "hevc", "av1", "vvc")} == guidance.REF_CODECS
    for n, c in guidance.REF_CODECS.items():
        assert ids.IMAGE_CODERS[c.ref_id] == n and c.efforts[refcodecs.REF_EFFORT]
    assert ids.IMAGE_CODERS[guidance.AV1S_ID] == "av1s" and ids.IMAGE_CODERS[guidance.HEVCS_ID] == "hevcs"
    assert refcodecs.CODECS["jpeg"].ref_id is None
