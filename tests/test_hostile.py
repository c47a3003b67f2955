"""A hostile world, held: forged files that declare huge outputs, inputs that cost the earth, special files,
signals, text that is not text, file-system traps, odd environments. Each promise of README's "Limits" section
and spec §9.1 is checked here from the outside (API, Pillow, CLI)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PARROTS
from PIL import Image

import cmcodec
import cmcodec.codec
from cmcodec.core import bitstream, guidance, limits
from cmcodec.core.errors import ConfigError, LimitError


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(r: subprocess.CompletedProcess, code: int) -> str:
    """The stderr of a run that failed as promised: the exit code, one line, no traceback."""
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("cmcodec: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def pixel_file(width: int, height: int, block: int = 1024) -> bytes:
    """A classic pixel-mode file of a flat map (its whole arithmetic stream dropped, spec §6.4): 10 bytes."""
    pm = bitstream.Section(1, 0, bytes([guidance.PixelParams(block=block, bits=1, chroma_drop=3).byte]))
    return bitstream.pack(mode="pixel", width=width, height=height, profile_id=1,
                          sections=[pm, bitstream.Section(0, 2, b"")])


# --- the decode cost budget (spec §9.1) -------------------------------------------------------------------

def test_a_tiny_file_declaring_a_huge_picture_is_refused_on_every_decode_path(tmp_path: Path) -> None:
    data = pixel_file(16384, 16384)
    assert len(data) == 10
    want = "decoded image: 16384x16384 is 268435456 pixels, above the limit of"
    t0 = time.process_time()
    with pytest.raises(LimitError, match=want):
        cmcodec.decode(data)
    [(_, err)] = list(cmcodec.codec.decode_many([data]))
    assert isinstance(err, LimitError) and want in str(err)
    path = tmp_path / "huge.cmc"
    path.write_bytes(data)
    (tmp_path / "big.cmc").write_bytes(pixel_file(8192, 8192))  # within Pillow's own guard, beyond the budget
    with pytest.raises(LimitError, match="8192x8192 is 67108864 pixels, above the limit") as e:
        Image.open(tmp_path / "big.cmc")
    assert isinstance(e.value, OSError)  # what Pillow's callers catch
    assert time.process_time() - t0 < 2  # refused from the header, nothing allocated
    line = one_line_error(run("decode", str(path), "-o", str(tmp_path / "out.png")), 4)
    assert want in line and "CMCODEC_LIMITS" in line and not (tmp_path / "out.png").exists()


def test_the_budget_is_raised_per_call_or_by_the_environment(tmp_path: Path) -> None:
    data = pixel_file(300, 200, block=64)
    small = cmcodec.DecodeOptions(limits=cmcodec.Limits(max_image_pixels=50_000))
    with pytest.raises(LimitError, match="300x200 is 60000 pixels, above the limit of 50000"):
        cmcodec.decode(data, small)
    assert cmcodec.decode(data).size == (300, 200)
    path = tmp_path / "p.cmc"
    path.write_bytes(data)
    one_line_error(run("decode", str(path), env={"CMCODEC_LIMITS": "max_image_pixels=50000"}), 4)
    r = run("decode", str(path), "-o", str(tmp_path / "p.png"), env={"CMCODEC_LIMITS": "max_image_pixels=60000"})
    assert r.returncode == 0, r.stderr
    for bad in ("max_image_pixels=lots", "nonsense=3", "max_image_pixels=0", "max_image_pixels"):
        line = one_line_error(run("decode", str(path), "-o", str(tmp_path / "q.png"),
                                  env={"CMCODEC_LIMITS": bad}), 2)
        assert "$CMCODEC_LIMITS" in line or "positive integer" in line
    with pytest.raises(ConfigError, match="may lower spec"):
        cmcodec.Limits(max_caption_chars=5000)


def test_strip_rendering_equals_whole_image_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFilter

    def whole_map(grid, params, w, h, up, smooth):
        gh, gw, _ = grid.shape
        small = Image.fromarray(grid, "YCbCr").convert("RGB")
        out = small.resize((gw * params.block, gh * params.block), guidance._RESAMPLE[up]).crop((0, 0, w, h))
        return out.filter(ImageFilter.GaussianBlur(smooth * params.block)) if smooth else out

    monkeypatch.setattr(guidance, "STRIP_PIXELS", 3000)  # many strips, last ones short
    rng = np.random.default_rng(5)
    for block, w, h in ((8, 203, 259), (16, 64, 300), (32, 333, 97), (8, 7, 5)):
        grid = rng.integers(0, 256, (-(-h // block), -(-w // block), 3), dtype=np.uint8)
        p = guidance.PixelParams(block=block)
        for up, smooth in (("bicubic", 0.35), ("lanczos", 0.0), ("bilinear", 0.1)):
            got = guidance.render_pixel_map(grid, p, w, h, up, smooth)
            assert np.array_equal(np.asarray(got), np.asarray(whole_map(grid, p, w, h, up, smooth)))
    ref = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    got = guidance.render_image_ref(ref, 250, 180, "lanczos", 0.5)
    want = ref.resize((250, 180), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.5 * 250 / 56))
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_encode_refuses_an_input_beyond_the_budget_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    Image.new("L", (400, 300)).save(buf, "PNG")
    opts = cmcodec.EncodeOptions(limits=cmcodec.Limits(max_image_pixels=100_000))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels decoded before the budget check"))
    with pytest.raises(LimitError, match="400x300 is 120000 pixels, above the limit of 100000"):
        cmcodec.encode(buf.getvalue(), caption="x", profile="classic", mode="pixel", options=opts)


def test_encode_leaves_pillows_process_wide_guard_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    cmcodec.encode(PARROTS, caption="a parrot", profile="classic", mode="pixel")
    cmcodec.encode(str(PARROTS), caption="a parrot")
    assert Image.MAX_IMAGE_PIXELS == before


def test_running_out_of_memory_is_a_limit_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(guidance, "_cells", no_memory)
    with pytest.raises(LimitError, match="out of memory encoding an image"):
        cmcodec.encode(PARROTS, caption="x", profile="classic", mode="pixel")
    monkeypatch.setattr(guidance, "render_pixel_map", no_memory)
    with pytest.raises(LimitError, match="out of memory decoding a file"):
        cmcodec.decode(pixel_file(64, 64, 8))


def test_the_default_budget_is_stated() -> None:
    assert cmcodec.Limits().max_image_pixels == limits.MAX_IMAGE_PIXELS == 1 << 25
    assert limits.limits_from_env({}) == limits.DEFAULT_LIMITS
    assert limits.limits_from_env({"CMCODEC_LIMITS": " max_image_pixels=7 , max_file_bytes=9"}) == \
        cmcodec.Limits(max_image_pixels=7, max_file_bytes=9)


# --- no native call without a bound ----------------------------------------------------------------------

FORGED = Path(__file__).parent / "forged"


def test_a_reference_stream_declaring_a_huge_picture_is_refused_before_decoding(tmp_path: Path) -> None:
    # 347 bytes: a 16x16 image whose VVC reference's SPS declares 4096x2176 (a flat picture VVenC made); the
    # demuxer ignored max_pixels, so the whole picture was decoded before the size check
    pytest.importorskip("av")
    data = (FORGED / "vvc_ref_declares_4096x2176.cmc").read_bytes()
    from cmcodec.core.refcodecs import _AV_DECODERS, _av_codecs

    if _av_codecs(_AV_DECODERS["vvc"])():
        pytest.skip("PyAV without a VVC decoder")
    with pytest.raises(cmcodec.FormatError, match="exceeds specified max pixel count"):
        cmcodec.decode(data)
    line = one_line_error(run("decode", str(FORGED / "vvc_ref_declares_4096x2176.cmc"), "-o",
                              str(tmp_path / "x.png")), 3)
    assert "corrupt image reference: vvc decoder failed" in line


def test_a_reference_decode_past_its_deadline_is_killed_and_the_next_one_works(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import GOLDEN

    from cmcodec.core import refcodecs

    data = (GOLDEN / "image_av1_classic.cmc").read_bytes()
    cmcodec.decode(data)  # the worker is up
    worker = refcodecs._worker
    assert worker is not None and worker.proc.is_alive()
    monkeypatch.setattr(refcodecs, "ref_deadline", lambda n, px: 0.0)  # no decode finishes in no time
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match="the reference decoder did not finish within 0.0 s"):
        cmcodec.decode(data)
    assert time.perf_counter() - t0 < 5
    worker.proc.join(5)
    assert not worker.proc.is_alive()  # killed, not left running
    monkeypatch.undo()
    assert cmcodec.decode(data).size == (cmcodec.read_header(data).width, cmcodec.read_header(data).height)


def test_a_crashing_reference_decoder_is_one_error_not_a_dead_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import GOLDEN

    from cmcodec.core import refcodecs

    data = (GOLDEN / "image_av1_classic.cmc").read_bytes()
    cmcodec.decode(data)
    refcodecs._worker.proc.kill()  # as a segfault in native code would end it
    refcodecs._worker.proc.join(5)
    assert cmcodec.decode(data).size == (cmcodec.read_header(data).width, cmcodec.read_header(data).height)
