"""The Pillow plugin: .cmc opens, loads and saves through PIL.Image as any image format does."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GOLDEN, HOUSE, PARROTS
from PIL import Image, UnidentifiedImageError

import cmcodec
from cmcodec import codec
from cmcodec.core.errors import ConfigError


@pytest.fixture(autouse=True)
def _default_plugin_options():
    cmcodec.plugin_options()
    yield
    cmcodec.plugin_options()


def test_registered_as_pillow_expects() -> None:
    assert Image.registered_extensions()[".cmc"] == "CMC"
    assert Image.MIME["CMC"] == "image/x-cmc"
    assert "CMC" in Image.SAVE and "CMC" in Image.OPEN


def test_open_reads_the_header_only_and_imports_no_torch() -> None:
    code = ("import sys; from PIL import Image; import cmcodec\n"
            f"im = Image.open({str(GOLDEN / 'text_wlm1.cmc')!r})\n"
            "print(im.format, im.size, im.mode, im.info['profile'], im.info['mode'], round(im.info['bpp'], 6))\n"
            "print(im.info['caption'])\n"
            "assert 'torch' not in sys.modules and 'cmcodec.codec' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    h = cmcodec.read_header((GOLDEN / "text_wlm1.cmc").read_bytes())
    first, caption = r.stdout.splitlines()
    assert first == f"CMC ({h.width}, {h.height}) RGB {h.profile_name} text {round(h.bpp, 6)}"
    assert caption and len(caption.split()) > 2


def test_load_decodes_classic_profile_files_as_cmcodec_decode() -> None:
    for name in ("pixel_classic.cmc", "image_av1_classic.cmc"):
        data = (GOLDEN / name).read_bytes()
        with Image.open(GOLDEN / name) as im:
            assert im.info["profile"] == "classic" and im.info["bytes"] == len(data)
            im.load()
            assert im.tobytes() == codec.decode(data).tobytes()
        with Image.open(io.BytesIO(data)) as im:  # a file object, as Pillow allows
            assert im.convert("RGB").tobytes() == codec.decode(data).tobytes()


def test_save_writes_what_cmcodec_encode_writes(tmp_path: Path) -> None:
    src = Image.open(PARROTS)
    out = tmp_path / "p.cmc"
    src.save(out, mode="pixel", profile="classic", bpp=0.01, caption="two parrots on a branch")  # by extension
    want = cmcodec.encode(PARROTS, mode="pixel", profile="classic", bpp=0.01, caption="two parrots on a branch")
    assert out.read_bytes() == want
    buf = io.BytesIO()
    src.save(buf, format="CMC", mode="image", profile="classic", max_bytes=120)
    assert len(buf.getvalue()) <= 120
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.info["mode"] == "image" and im.size == src.size


def test_foreign_and_broken_files_fail_as_pillow_users_expect(tmp_path: Path) -> None:
    (tmp_path / "x.cmc").write_bytes(b"hello, not an image")  # the extension does not make it one
    with pytest.raises(UnidentifiedImageError):
        Image.open(tmp_path / "x.cmc")
    with Image.open(HOUSE) as im:  # a PNG stays a PNG
        assert im.format == "PNG"
    bad = tmp_path / "bad.cmc"
    bad.write_bytes((GOLDEN / "pixel_classic.cmc").read_bytes()[:-3])
    with pytest.raises(cmcodec.FormatError, match="corrupt or truncated") as e:
        Image.open(bad)
    assert isinstance(e.value, OSError)  # `except OSError`, as around any Image.open, catches it too
    with pytest.raises(OSError, match=r"unknown CMC save option.*bbp"):
        Image.open(PARROTS).save(tmp_path / "y.cmc", bbp=0.1)
    with pytest.raises(cmcodec.BudgetError, match="smallest file is"):
        Image.open(PARROTS).save(tmp_path / "z.cmc", mode="text", caption="x", max_bytes=3)
    assert not (tmp_path / "z.cmc").exists() or (tmp_path / "z.cmc").stat().st_size == 0


def test_plugin_options_reject_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="model_pth"):
        cmcodec.plugin_options(model_pth="x")


def test_load_with_a_tiny_model_through_plugin_options(tiny_sd: Path) -> None:
    data = (GOLDEN / "text_wlm1.cmc").read_bytes()
    dec, _ = cmcodec.plugin_options(model_path=str(tiny_sd), device="cpu")
    assert dec.model_path == str(tiny_sd)
    with Image.open(GOLDEN / "text_wlm1.cmc") as im:
        im.load()
        got = im.tobytes()
    assert got == codec.decode(data, codec.DecodeOptions(model_path=str(tiny_sd), device="cpu")).tobytes()
    cmcodec.plugin_options(model_path=str(tiny_sd / "absent"), device="cpu")
    with Image.open(GOLDEN / "text_wlm1.cmc") as im, pytest.raises(cmcodec.ModelError) as e:
        im.load()
    assert isinstance(e.value, OSError) and "absent" in str(e.value)
