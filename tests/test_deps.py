"""Floors of the conventional libraries (cmcodec.core.deps): the same as pyproject's, and an install older than
a floor gives the one-line error naming the version found, where it would otherwise fail obscurely (a TypeError
inside the caption decoder, a valid image reference reported as corrupt, a silent "Unknown feature")."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import GOLDEN, PARROTS, ROOT
from PIL import Image

from cmcodec.core import deps, guidance, refcodecs, textcode
from cmcodec.core.errors import CodecUnavailableError


def _pretend(monkeypatch: pytest.MonkeyPatch, **versions: str) -> None:
    """Make deps see the given installed versions (the others as installed)."""
    real = deps.installed
    monkeypatch.setattr(deps, "installed", lambda dist: versions.get(dist) or real(dist))


def test_floors_in_code_are_the_floors_of_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for feature, (dist, floor, _) in deps.FLOORS.items():
        found = re.findall(rf'"{dist}>=([0-9.]+)"', text)
        assert floor in found, f"{feature}: pyproject gives {dist} >= {found}, core.deps.FLOORS {floor}"


def test_the_installed_libraries_meet_the_floors() -> None:
    assert [f for f in deps.FLOORS if deps.too_old(f)] == []
    assert deps.version_tuple("17.1.0.dev0") == (17, 1, 0) and deps.version_tuple("4.9") < (4, 15)


def test_an_old_brotli_is_a_clear_error_not_a_type_error(monkeypatch: pytest.MonkeyPatch) -> None:
    s = textcode.caption_section("two parrots", "brotli")
    cid, data = s.coder_id, s.payload
    assert textcode.decode(data, cid) == "two parrots"
    _pretend(monkeypatch, brotli="1.1.0")
    with pytest.raises(CodecUnavailableError, match=r"^brotli 1\.1\.0 is installed; cmcodec needs brotli >= 1\.2 "
                                                    r"\(Decompressor\.process\(output_buffer_limit=\)"):
        textcode.decode(data, cid)


def test_cli_names_the_old_brotli_in_one_line() -> None:
    code = ("from cmcodec.core import deps; deps.installed = lambda d: '1.1.0' if d == 'brotli' else None; "
            "from cmcodec.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code, "info", str(GOLDEN / "text_brotli_seed.cmc")],
                       capture_output=True, text=True)
    assert r.returncode == CodecUnavailableError.exit_code, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("cmcodec: error: "), r.stderr
    assert "text_brotli_seed.cmc: brotli 1.1.0 is installed; cmcodec needs brotli >= 1.2" in r.stderr
    assert "pip install -U 'brotli>=1.2'" in r.stderr


def test_a_pyav_without_the_decoder_is_unavailable_not_a_corrupt_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    from cmcodec.core.bitstream import read_header

    h = read_header((GOLDEN / "image_av1_classic.cmc").read_bytes())
    (s,) = [s for s in h.sections if s.name == "image_ref"]
    guidance.decode_image_ref(s.payload, s.coder_id, h.width, h.height)  # decodes here
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libdav1d"})
    with pytest.raises(CodecUnavailableError, match=r"^cannot decode av1: PyAV's FFmpeg lacks libdav1d$"):
        guidance.decode_image_ref(s.payload, s.coder_id, h.width, h.height)
    _pretend(monkeypatch, av="12.0.0")  # and the upgrade line when PyAV predates the floor
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"vvc"})
    with pytest.raises(CodecUnavailableError, match=r"^cannot decode vvc: PyAV's FFmpeg lacks vvc: av 12\.0\.0 is "
                                                    r"installed; cmcodec needs av >= 17\.1 .*'av>=17\.1'$"):
        refcodecs.av_decode(b"\x00\x00\x01", "vvc")


def test_an_old_pyav_leaves_av1_for_hevc_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    assert guidance.default_ref_codec().name == "av1"
    _pretend(monkeypatch, av="16.0.0")  # its SVT-AV1 encodes only the first AVIF-mode picture of a process
    why = refcodecs.CODECS["av1"].available()
    assert why and why.startswith("av 16.0.0 is installed; cmcodec needs av >= 17.1"), why
    assert refcodecs.CODECS["hevc"].available() is None and guidance.default_ref_codec().name == "hevc"
    from cmcodec import codec

    with pytest.raises(CodecUnavailableError, match=r"image-reference codec av1 is not usable here: av 16\.0\.0"):
        codec.encode(Image.open(PARROTS), mode="image", caption="", options=codec.EncodeOptions(ref_codec="av1"))


def test_a_pillow_before_avif_says_which_release_brings_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    _pretend(monkeypatch, pillow="11.2.1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Unknown feature" warning either
        why = refcodecs.CODECS["avif"].available()
    assert why == ("Pillow has no avif: pillow 11.2.1 is installed; cmcodec needs pillow >= 11.3 (Pillow's wheels "
                   "carry libavif from 11.3 on): pip install -U 'pillow>=11.3'")


def test_metrics_without_pyiqa_are_one_line_not_a_traceback(tmp_path) -> None:
    from cmcodec.core.errors import ModelError

    code = "import sys; sys.modules['pyiqa'] = None; from cmcodec.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", code, "rd-curve", str(PARROTS.parent), "-o", str(tmp_path / "r"),
                        "--metrics", "psnr"], capture_output=True, text=True)
    assert r.returncode == ModelError.exit_code, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("cmcodec: error: pyiqa is not installed"), r.stderr
    assert "pip install 'cmcodec[rd]'" in r.stderr
