"""Odd input images: each is converted correctly or rejected with a message naming the problem."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import PARROTS
from PIL import Image

import cmcodec
from cmcodec.core.bitstream import Limits
from cmcodec.core.errors import ImageInputError, LimitError
from cmcodec.media.images import load_image


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_grey_palette_alpha_cmyk_16bit_are_converted() -> None:
    base = Image.open(PARROTS).convert("RGB")
    for img in (base.convert("L"), base.convert("P"), base.convert("RGBA"), base.convert("LA"),
                base.convert("CMYK"), Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)):
        fmt = "JPEG" if img.mode == "CMYK" else ("TIFF" if img.mode in ("CMYK",) else "PNG")
        out = load_image(_png(img, fmt))
        assert out.mode == "RGB" and out.size == base.size


def test_16bit_scaled_not_clipped() -> None:
    arr = np.full((8, 8), 65535, dtype=np.uint16)
    assert np.asarray(load_image(_png(Image.fromarray(arr))))[0, 0, 0] == 255


def test_alpha_composited_over_white() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert tuple(np.asarray(load_image(_png(img)))[0, 0]) == (255, 255, 255)


def test_exif_rotation_applied() -> None:
    img = Image.new("RGB", (30, 10), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise
    assert load_image(_png(img, "JPEG", exif=exif.tobytes())).size == (10, 30)


def test_one_pixel_image_encodes() -> None:
    data = cmcodec.encode(_png(Image.new("RGB", (1, 1), (10, 200, 30))), mode="pixel", profile="classic")
    assert cmcodec.decode(data).size == (1, 1)


def test_unreadable_truncated_animated_rejected() -> None:
    with pytest.raises(ImageInputError, match="not an image file"):
        load_image(b"definitely not an image")
    good = _png(Image.open(PARROTS))
    with pytest.raises(ImageInputError, match="unreadable or truncated"):
        load_image(good[: len(good) // 2])
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageInputError, match="animated image with 2 frames"):
        load_image(buf.getvalue())
    with pytest.raises(ImageInputError, match="expected an image file, found nothing"):
        load_image("/no/such/file.png")


def test_pixel_limits_are_checked_from_the_header_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    big = _png(Image.new("L", (3000, 3000)))
    with monkeypatch.context() as m:
        m.setattr(Image.Image, "load", lambda self: pytest.fail("pixels decoded before the limit check"))
        with pytest.raises(LimitError, match="3000x3000 exceeds the limits"):
            load_image(big, Limits(max_pixels=1_000_000))
    with pytest.raises(LimitError, match="exceeds the limits"):
        load_image(Image.new("RGB", (300, 10)), Limits(max_width=256))


def test_limits_per_call_leave_pillows_guard_alone_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    load_image(_png(Image.new("L", (8, 8))))
    guard = Image.MAX_IMAGE_PIXELS
    big, small = _png(Image.new("L", (1200, 1000))), Limits(max_pixels=1_000_000)

    def one(i: int) -> str:
        try:
            return f"{load_image(big, small if i % 2 else Limits()).size}"
        except LimitError:
            return "refused"

    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(one, range(64)))
    want = ["(1200, 1000)", "refused"] * 32
    assert got == want
    now = Image.MAX_IMAGE_PIXELS
    assert now == guard  # set once, never per call


def test_pillows_own_guard_gives_a_limit_error(monkeypatch: pytest.MonkeyPatch) -> None:
    load_image(_png(Image.new("L", (8, 8))))  # the one-time adjustment has run
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # an application's stricter process-wide guard
    with pytest.raises(LimitError, match="Pillow's pixel limit"):
        load_image(_png(Image.new("L", (600, 400))))


def test_arrays_accepted() -> None:
    assert load_image(np.zeros((5, 7, 3), dtype=np.float32)).size == (7, 5)
    with pytest.raises(ImageInputError, match="expected HxW"):
        load_image(np.zeros((2, 2, 2)))
