"""Odd input images: each is converted correctly or rejected with a message naming the problem."""

from __future__ import annotations

import io
from pathlib import Path

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


# ---- colours of every mode Pillow opens, against Pillow's own conversion --------------------------------------
# Each input is a real file (the way users hand them in) with strongly coloured regions, so an inverted,
# swapped or dropped channel cannot pass; the expected colours come from Pillow's (or LittleCMS's) own
# conversion of the very image Pillow opened.

def _regions() -> Image.Image:
    """A 32x16 RGB picture: red, green, blue, yellow, cyan, magenta, white and dark grey blocks."""
    img = Image.new("RGB", (32, 16))
    colours = [(230, 20, 20), (20, 200, 40), (30, 40, 220), (240, 230, 30),
               (20, 220, 230), (220, 30, 210), (255, 255, 255), (40, 40, 40)]
    for k, c in enumerate(colours):
        img.paste(c, (8 * (k % 4), 8 * (k // 4), 8 * (k % 4) + 8, 8 * (k // 4) + 8))
    return img


def _over_white(img: Image.Image) -> np.ndarray:
    """Pillow's own RGBA conversion of img, composited over white (what cmcodec does with transparency)."""
    rgba = img.convert("RGBA")
    return np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB"))


def _strip_adobe_marker(jpeg: bytes) -> bytes:
    """The JPEG without its APP14 'Adobe' segment (a CMYK JPEG as non-Adobe writers make it)."""
    i = jpeg.index(b"\xff\xee")
    n = int.from_bytes(jpeg[i + 2:i + 4], "big")
    assert jpeg[i + 4:i + 9] == b"Adobe"
    return jpeg[:i] + jpeg[i + 2 + n:]


def _ycck_jpeg(rgb: Image.Image) -> bytes:
    """A YCCK JPEG (Adobe transform 2, as Photoshop writes CMYK) of rgb, in Adobe's inverted polarity."""
    imagecodecs = pytest.importorskip("imagecodecs")
    cmyk = 255 - np.asarray(rgb.convert("CMYK"))  # Adobe CMYK JPEGs store 255 - ink
    return imagecodecs.jpeg8_encode(np.ascontiguousarray(cmyk), level=98, colorspace="CMYK", outcolorspace="YCCK")


def _close(got: Image.Image, want: np.ndarray, tol: int = 2) -> None:
    a = np.asarray(got).astype(int)
    assert got.mode == "RGB" and a.shape == want.shape
    assert np.abs(a - want.astype(int)).max() <= tol, "colours differ from Pillow's own conversion"


def test_cmyk_adobe_jpeg_colours_match_pillow() -> None:
    data = _png(_regions().convert("CMYK"), "JPEG", quality=98)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "CMYK" and opened.info.get("adobe_transform") == 0  # the Adobe marker, no transform
    want = np.asarray(opened.convert("RGB"))
    assert np.abs(want[4, 4].astype(int) - (230, 20, 20)).max() < 20  # red stays red (not cyan)
    _close(load_image(data), want)


def test_cmyk_jpeg_without_adobe_marker_colours_match_pillow() -> None:
    data = _strip_adobe_marker(_png(_regions().convert("CMYK"), "JPEG", quality=98))
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "CMYK" and "adobe" not in opened.info
    _close(load_image(data), np.asarray(opened.convert("RGB")))


def test_ycck_jpeg_colours_match_pillow() -> None:
    data = _ycck_jpeg(_regions())
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "CMYK" and opened.info.get("adobe_transform") == 2
    want = np.asarray(opened.convert("RGB"))
    assert np.abs(want[4, 4].astype(int) - (230, 20, 20)).max() < 20
    _close(load_image(data), want)


def test_lab_tiff_colours_match_littlecms() -> None:
    from PIL import ImageCms

    lab = ImageCms.applyTransform(_regions(), ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"))
    data = _png(lab, "TIFF")
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "LAB"
    want = np.asarray(ImageCms.applyTransform(opened, ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")))
    assert np.abs(want[4, 4].astype(int) - (230, 20, 20)).max() < 20
    _close(load_image(data), want)


def test_16_bit_grey_png_is_scaled_like_pillows_8_bit_grey() -> None:
    # Pillow's own I;16 -> L conversion clips at 255 (all but the darkest greys turn white), so the reference
    # is Pillow's conversion of the 8-bit grey the 16-bit file was made from (v * 257 holds v exactly)
    grey = _regions().convert("L")
    data = _png(Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    _close(load_image(data), np.asarray(grey.convert("RGB")), tol=0)


def test_palette_with_transparency_colours_match_pillow() -> None:
    pal = _regions().quantize(8)
    pal.info["transparency"] = pal.getpixel((28, 12))  # the dark grey block's index is transparent
    data = _png(pal)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "P" and "transparency" in opened.info
    want = _over_white(opened)
    assert tuple(want[12, 28]) == (255, 255, 255) and tuple(want[4, 4]) != (255, 255, 255)
    _close(load_image(data), want, tol=0)


def test_grey_with_alpha_colours_match_pillow() -> None:
    la = _regions().convert("LA")
    la.putalpha(Image.linear_gradient("L").resize(la.size))
    data = _png(la)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "LA"
    _close(load_image(data), _over_white(opened), tol=1)


def test_red_cmyk_jpeg_decodes_red() -> None:
    # the whole path: a red Adobe CMYK JPEG, encoded (pixel map, classic decoder) and decoded, stays red
    red = Image.new("RGB", (64, 64), (220, 20, 20))
    data = cmcodec.encode(_png(red.convert("CMYK"), "JPEG", quality=95), mode="pixel", profile="classic",
                          caption="a red square")
    out = np.asarray(cmcodec.decode(data)).reshape(-1, 3).mean(axis=0)
    assert np.abs(out - (220, 20, 20)).max() < 25, out


ADOBE_RGB = Path(__file__).resolve().parents[1] / "fixtures" / "icc" / "compatibleWithAdobeRGB1998.icc"


def _tagged(img: Image.Image, fmt: str, icc: bytes, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, icc_profile=icc, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_wide_gamut_inputs_are_converted_to_srgb(fmt: str) -> None:
    """An Adobe RGB picture read as if it were sRGB would lose saturation: its values go through littlecms
    from its embedded profile to sRGB, as an image viewer shows it."""
    from PIL import ImageCms

    icc = ADOBE_RGB.read_bytes()
    img = Image.open(PARROTS).convert("RGB")
    data = _tagged(img, fmt, icc, **({"quality": 100} if fmt == "JPEG" else {}))
    stored = Image.open(io.BytesIO(data)).convert("RGB")
    want = ImageCms.profileToProfile(stored, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                     ImageCms.createProfile("sRGB"), outputMode="RGB")
    got = load_image(data)
    assert np.array_equal(np.asarray(got), np.asarray(want))
    assert np.abs(np.asarray(got, np.int16) - np.asarray(stored, np.int16)).max() > 10  # it did change colours
    assert load_image(Image.open(io.BytesIO(data))).tobytes() == got.tobytes()  # an opened PIL image too
    assert load_image(got).tobytes() == got.tobytes()  # read again (a folder encode hands it on): no second conversion
    rgba = load_image(_tagged(img.convert("RGBA"), "PNG", icc))
    assert np.array_equal(np.asarray(rgba), np.asarray(want if fmt == "PNG" else load_image(
        _tagged(img, "PNG", icc))))


def test_srgb_other_space_and_broken_profiles_leave_the_stored_values() -> None:
    """A profile that maps colours onto themselves (sRGB, whoever wrote it), one of another colour space than
    the pixels (Lab on RGB), and bytes that are no profile at all: the pixels are read as stored."""
    from PIL import ImageCms

    img = Image.open(PARROTS).convert("RGB")
    for icc in (ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
                ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(), b"not a profile" * 20):
        assert load_image(_tagged(img, "PNG", icc)).tobytes() == img.tobytes()


def test_a_rotated_photo_keeps_its_profile() -> None:
    """EXIF rotation comes first and the profile stays with the picture: it is converted all the same."""
    icc = ADOBE_RGB.read_bytes()
    ex = Image.Exif()
    ex[0x0112] = 6  # rotate 90 degrees on display
    img = Image.new("RGB", (8, 4), (200, 120, 60))
    got = load_image(_tagged(img, "JPEG", icc, exif=ex, quality=100))
    plain = load_image(_tagged(img, "JPEG", icc, quality=100))
    assert got.size == (4, 8) and got.getpixel((0, 0)) == plain.getpixel((0, 0)) != (200, 120, 60)


def test_a_read_picture_carries_no_profile() -> None:
    """Its values are sRGB: a profile left in its info would be written into PNG and AVIF files made from it
    (an anchor codec's bytes, counted in its bpp); the caller's own image keeps its info."""
    icc = ADOBE_RGB.read_bytes()
    img = Image.open(PARROTS).convert("RGB")
    for data in (_tagged(img, "PNG", icc), _tagged(img, "JPEG", icc, quality=100)):
        got = load_image(data)
        assert "icc_profile" not in got.info
        buf = io.BytesIO()
        got.save(buf, "PNG")
        assert "icc_profile" not in Image.open(io.BytesIO(buf.getvalue())).info
    mine = Image.open(PARROTS).convert("RGB")
    mine.info["icc_profile"] = _srgb_profile()
    got = load_image(mine)
    assert "icc_profile" in mine.info and "icc_profile" not in got.info and got.tobytes() == mine.tobytes()
    plain = Image.open(PARROTS).convert("RGB")
    assert load_image(plain) is plain  # an upright RGB picture without a profile is not copied


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_an_avif_anchor_of_a_tagged_input_counts_no_profile_bytes() -> None:
    """rd-curve's AVIF anchor codes the picture load_image gives: a profile left in it was embedded by Pillow's
    AVIF writer, some 600 bytes counted in the anchor's bpp (more than the whole file at 0.01 bpp)."""
    from PIL import features

    from cmcodec.core.refcodecs import CODECS

    if not features.check("avif"):
        pytest.skip("Pillow without AVIF")
    img = Image.open(PARROTS).convert("RGB")
    got = load_image(_tagged(img, "PNG", ADOBE_RGB.read_bytes()))
    untagged = Image.frombytes("RGB", got.size, got.tobytes())
    assert CODECS["avif"].encode(got, 20) == CODECS["avif"].encode(untagged, 20)
