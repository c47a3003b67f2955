"""A hostile world, held: forged files that declare huge outputs, inputs that cost the earth, special files,
signals, text that is not text, file-system traps, odd environments. Each promise of README's "Limits" section
and spec §9.1 is checked here from the outside (API, Pillow, CLI)."""

from __future__ import annotations

import io
import json
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
    # large cells: neighbouring strips share a box (here 3 boxes for 10 strips), resized once each
    grid = rng.integers(0, 256, (10, 2, 3), dtype=np.uint8)
    p = guidance.PixelParams(block=64)
    calls = []
    real_resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, *a, **k: (calls.append(1) if self.size == (2, 10) else None)
                        or real_resize(self, *a, **k))  # resizes of the grid itself
    got = guidance.render_pixel_map(grid, p, 100, 600, "bicubic", 0.0)
    assert len(guidance._strips(100, 600, 0)) == 10 and len(calls) == 3
    monkeypatch.setattr(Image.Image, "resize", real_resize)
    assert np.array_equal(np.asarray(got), np.asarray(whole_map(grid, p, 100, 600, "bicubic", 0.0)))
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
        cmcodec.encode(buf.getvalue(), profile="classic", mode="pixel", options=opts)


def test_encode_leaves_pillows_process_wide_guard_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    cmcodec.encode(PARROTS, profile="classic", mode="pixel")
    cmcodec.encode(str(PARROTS), caption="a parrot")
    assert before == Image.MAX_IMAGE_PIXELS


def test_running_out_of_memory_is_a_limit_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(guidance, "_cells", no_memory)
    with pytest.raises(LimitError, match="out of memory encoding an image"):
        cmcodec.encode(PARROTS, profile="classic", mode="pixel")
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
    assert worker is not None and worker.alive()
    monkeypatch.setattr(refcodecs, "ref_deadline", lambda n, px: 0.0)  # no decode finishes in no time
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match=r"the reference decoder did not finish within 0\.0 s"):
        cmcodec.decode(data)
    assert time.perf_counter() - t0 < 5
    worker.proc.wait(5)
    assert not worker.alive()  # killed, not left running
    monkeypatch.undo()
    assert cmcodec.decode(data).size == (cmcodec.read_header(data).width, cmcodec.read_header(data).height)


def test_a_crashing_reference_decoder_is_one_error_not_a_dead_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import GOLDEN

    from cmcodec.core import refcodecs

    data = (GOLDEN / "image_av1_classic.cmc").read_bytes()
    cmcodec.decode(data)
    refcodecs._worker.proc.kill()  # as a segfault in native code would end it
    refcodecs._worker.proc.wait(5)
    assert cmcodec.decode(data).size == (cmcodec.read_header(data).width, cmcodec.read_header(data).height)


# --- special files and file-system traps -----------------------------------------------------------------

def test_special_files_are_refused_as_inputs_before_a_byte_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "in.cmc"
    os.mkfifo(fifo)  # no writer: reading it would block for ever
    t0 = time.monotonic()
    line = one_line_error(run("decode", str(fifo), "-o", str(tmp_path / "x.png")), 2)
    assert "expected a regular file, found a FIFO" in line
    line = one_line_error(run("info", str(fifo)), 2)
    line = one_line_error(run("encode", "/dev/zero", "-o", str(tmp_path / "z.cmc"), "--caption", "x"), 5)
    assert "expected an image file, found a character device" in line
    png = tmp_path / "pic.png"
    os.mkfifo(png)
    line = one_line_error(run("encode", str(png), "--caption", "x"), 5)
    assert "found a FIFO" in line
    assert time.monotonic() - t0 < 60  # four process starts, no wait on a FIFO
    from cmcodec.media.fileio import read_input

    with pytest.raises(cmcodec.CmcodecError, match="found a character device"):
        read_input(Path("/dev/zero"))


@pytest.mark.parametrize("kind", ["fifo", "link-to-stdout", "link-to-null", "folder"])
def test_force_never_replaces_a_special_file_with_a_regular_one(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "out.cmc"
    if kind == "folder":  # -o an existing folder puts the file inside it (README): the folder is never replaced
        out.mkdir()
        assert run("encode", str(PARROTS), "-o", str(out), "--caption", "x", "--force").returncode == 0
        assert out.is_dir() and [p.name for p in out.iterdir()] == ["parrots_192x128.cmc"]
        return
    if kind == "fifo":
        os.mkfifo(out)
    else:
        out.symlink_to("/dev/stdout" if kind == "link-to-stdout" else "/dev/null")
    line = one_line_error(run("encode", str(PARROTS), "-o", str(out), "--caption", "x", "--force"), 10)
    assert "expected a regular file or a new path" in line
    assert out.is_symlink() or out.is_dir() or out.is_fifo()
    assert [p.name for p in tmp_path.iterdir()] == ["out.cmc"]  # no temp or lock file left


def _cmc(tmp_path: Path) -> Path:
    src = tmp_path / "src.cmc"
    src.write_bytes(pixel_file(64, 48, 16))
    return src


def test_every_file_system_failure_of_an_output_is_one_line(tmp_path: Path) -> None:
    src = _cmc(tmp_path)
    (tmp_path / "afile").write_bytes(b"x")
    line = one_line_error(run("decode", str(src), "-o", str(tmp_path / "afile" / "x.png")), 11)
    assert "x.png: Not a directory" in line
    line = one_line_error(run("decode", str(src), "-o", str(tmp_path / ("n" * 300 + ".png"))), 11)
    assert "File name too long" in line
    ok = tmp_path / ("n" * 240 + ".png")  # fits the file system, not with a temp suffix: a hashed temp name
    r = run("decode", str(src), "-o", str(ok))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["afile", "src.cmc", ok.name])


def test_a_read_only_folder_is_one_line(tmp_path: Path) -> None:
    src = _cmc(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions: a read-only mount instead, if allowed
            ro.chmod(0o755)
            if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                              capture_output=True).returncode:
                pytest.skip("running as root without mount: no read-only folder to test against")
        line = one_line_error(run("decode", str(src), "-o", str(ro / "x.png")), 11)
        assert "Permission denied" in line or "Read-only file system" in line
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
        ro.chmod(0o755)


def test_a_full_disk_in_a_write_is_a_disk_full_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from cmcodec.core.errors import DiskFullError
    from cmcodec.media import fileio

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match="No space left on device"):
        fileio.write_bytes(tmp_path / "a.cmc", b"x" * 100)
    assert list(tmp_path.iterdir()) == []  # the temp file and the lock are gone


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 400 kB tmpfs (root with mount), else skip: a real full disk, not a simulated one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (the simulated ENOSPC test covers the API)")
    yield disk
    subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_full_disk_stops_a_folder_run_keeping_finished_files(tmp_path: Path, small_disk: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):  # a noisy 8-bit map: about 100 kB of PNG each
        pm = bitstream.Section(1, 0, bytes([guidance.PixelParams(block=8, bits=8, chroma_drop=0).byte])
                               + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
        (src / f"f{i:02d}.cmc").write_bytes(bitstream.pack(mode="pixel", width=256, height=256, profile_id=1,
                                                           sections=[pm, bitstream.Section(0, 2, b"")]))
    r = run("decode", str(src), "-o", str(small_disk / "out"))
    line = one_line_error(r, 11) if r.stderr.count("\n") == 1 else r.stderr.strip().splitlines()[-1]
    assert r.returncode == 11 and "No space left on device" in line and "the run stopped after" in line
    kept = sorted(p for p in (small_disk / "out").iterdir() if p.name != ".cmcodec-run.jsonl")  # the run record
    assert 0 < len(kept) < 12 and all(p.suffix == ".png" for p in kept), kept  # no temp or lock file left
    for p in kept:
        Image.open(p).load()  # every kept file is complete


def test_two_writers_of_one_output_exactly_one_wins(tmp_path: Path) -> None:
    from cmcodec.core.errors import OutputError, OutputExistsError
    from cmcodec.media import fileio

    out = tmp_path / "o.cmc"
    with fileio.atomic_path(out) as tmp:  # a writer holds the output
        tmp.write_bytes(b"first")
        with pytest.raises(OutputError, match="another process is writing this output"):
            fileio.write_bytes(out, b"second", force=True)
    assert out.read_bytes() == b"first"
    with pytest.raises(OutputExistsError), fileio.atomic_path(tmp_path / "p.cmc") as tmp:
        tmp.write_bytes(b"mine")
        (tmp_path / "p.cmc").write_bytes(b"theirs")  # appeared while this one was computed
    assert (tmp_path / "p.cmc").read_bytes() == b"theirs"
    # two processes at once, no --force: one writes, the other is refused
    procs = [subprocess.Popen([sys.executable, "-m", "cmcodec.cli", "encode", str(PARROTS), "-o",
                               str(tmp_path / "c.cmc"), "--mode", "pixel", "--profile", "classic", "--seed", str(k)],
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    codes = sorted(p.wait(120) for p in procs)
    assert codes[0] == 0 and codes[1] in (10, 11), codes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.cmc", "o.cmc", "p.cmc"]


def test_stale_temp_files_of_a_killed_run_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    from cmcodec.media import fileio

    stale = tmp_path / ".o.cmc.part.tmp"  # what a writer killed mid-write leaves
    stale.write_bytes(b"half a file")
    other = tmp_path / ".x.cmc.part.tmp"  # another output's: not this writer's to remove
    other.write_bytes(b"x")
    fileio.write_bytes(tmp_path / "o.cmc", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.cmc.part.tmp", "o.cmc"]
    assert (tmp_path / "o.cmc").read_bytes() == b"whole"


def test_writing_an_output_never_lists_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder run writes N outputs into one folder: a listing per output would make it cost N^2."""
    from cmcodec.media import fileio

    def no_listing(*a: object, **k: object) -> None:
        raise AssertionError("an output write listed its folder")

    monkeypatch.setattr(os, "listdir", no_listing)
    monkeypatch.setattr(os, "scandir", no_listing)
    fileio.write_bytes(tmp_path / "o.cmc", b"whole")
    fileio.write_bytes(tmp_path / "o.cmc", b"again", force=True)
    assert (tmp_path / "o.cmc").read_bytes() == b"again"


def test_a_fifo_named_like_an_output_fails_alone_in_a_folder_run(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for n in ("a", "b"):
        (src / f"{n}.cmc").write_bytes(pixel_file(64, 48, 16))
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "a.decoded.png")
    r = run("decode", str(src), "-o", str(out), timeout=60)
    assert r.returncode == 1 and "found a FIFO" in r.stderr, r.stderr
    assert (out / "b.decoded.png").is_file() and (out / "a.decoded.png").is_fifo()


# --- text that is not text ----------------------------------------------------------------------------------

def test_a_caption_decoding_to_a_lone_surrogate_is_a_format_error(tmp_path: Path) -> None:
    # 15 bytes: a wlm2 caption whose escaped word spells U+D800 (the word model codes any code point)
    path = FORGED / "caption_lone_surrogate.cmc"
    data = path.read_bytes()
    with pytest.raises(cmcodec.FormatError, match="found U\\+D800 at character 2"):
        cmcodec.codec.validate(data)
    with pytest.raises(cmcodec.FormatError, match="Unicode scalar values"):
        Image.open(path)
    line = one_line_error(run("info", "--json", str(path)), 3)
    assert "expected Unicode scalar values (spec §6.1), found U+D800" in line
    with pytest.raises(ConfigError, match=r"caption is not Unicode text.*U\+DCE9 at character 3"):
        cmcodec.encode(PARROTS, caption="caf\udce9")  # what os.fsdecode makes of b"caf\xe9"


def test_non_utf8_caption_bytes_on_the_command_line_are_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "cmcodec.cli", "encode", str(PARROTS), "-o", str(tmp_path / "c.cmc"),
                        b"--caption", b"caf\xe9 au lait"], capture_output=True, timeout=120)
    r.stderr = r.stderr.decode("utf-8", "backslashreplace")
    line = one_line_error(r, 2)
    assert "caption is not Unicode text" in line and not (tmp_path / "c.cmc").exists()


@pytest.mark.parametrize("encoding", ["latin-1", "ascii", "utf-8"])
def test_everything_printed_is_encodable_in_any_locale(tmp_path: Path, encoding: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9.png"  # a file name that is not UTF-8
    with open(raw, "wb") as f:
        f.write(PARROTS.read_bytes())
    env = {"PYTHONIOENCODING": encoding, "LC_ALL": "C.UTF-8"}
    r = subprocess.run([sys.executable, "-m", "cmcodec.cli", "encode", str(folder), "-o", str(tmp_path / "out"),
                        "--caption", "café ☕ naïve"], capture_output=True, timeout=120, env={**os.environ, **env})
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr
    [cmc] = list((tmp_path / "out").glob("*.cmc"))
    r = subprocess.run([sys.executable, "-m", "cmcodec.cli", "info", os.fsencode(cmc)], capture_output=True,
                       timeout=60, env={**os.environ, **env})
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr
    # click writes UTF-8 where the stream claims ASCII (a misconfigured terminal, as it judges), with "?" for a
    # file name's undecodable bytes; elsewhere the stream's own encoding, with backslash escapes
    out = r.stdout.decode("utf-8" if encoding == "ascii" else encoding, "strict")
    assert ("café ☕ naïve" in out) if encoding != "latin-1" else ("café \\u2615 naïve" in out), out
    r = subprocess.run([sys.executable, "-m", "cmcodec.cli", "info", "--json", os.fsencode(cmc)],
                       capture_output=True, timeout=60, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    [rec] = json.loads(r.stdout.decode("utf-8" if encoding == "ascii" else encoding))
    assert rec["caption"] == "café ☕ naïve" and os.fsencode(rec["file"]) == os.fsencode(cmc)


# --- odd environments -----------------------------------------------------------------------------------------

def _cli_in_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter that reports (on stdout's last line) whether torch was imported."""
    code = ("import sys\nfrom cmcodec.cli import main\nsys.argv = ['cmcodec', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print('torch' in sys.modules)\n    raise\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}, **env})


@pytest.mark.parametrize("env", [{"RANK": "1", "WORLD_SIZE": "2"}, {"RANK": "x"}, {"RANK": "3", "WORLD_SIZE": "2"},
                                 {"WORLD_SIZE": "-1"}], ids=["no-launcher", "not-a-number", "rank-past-size", "size"])
def test_stray_launcher_variables_are_one_line_without_torch(tmp_path: Path, env: dict[str, str]) -> None:
    r = _cli_in_process(["encode", str(PARROTS), "-o", str(tmp_path / "p.cmc"), "--mode", "pixel", "--profile",
                         "classic"], env)
    line = one_line_error(r, 2)
    assert "launcher environment" in line and r.stdout.strip().splitlines()[-1] == "False"
    assert not (tmp_path / "p.cmc").exists()


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b'{"a": 1}', "fifo", "/dev/zero"],
                         ids=["not-utf8", "deep", "not-strings", "fifo", "dev-zero"])
def test_a_malformed_revisions_file_is_one_line(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "pins.json"
    if content == "fifo":
        os.mkfifo(path)
    elif content == "/dev/zero":
        path = Path("/dev/zero")
    else:
        path.write_bytes(content)
    r = run("profiles", env={"CMCODEC_REVISIONS": str(path)}, timeout=60)
    assert "$CMCODEC_REVISIONS" in one_line_error(r, 2)


def test_pixel_mode_on_an_8200_square_image_is_one_line(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (8200, 8200), 90).save(big)  # 67 MB in memory once, 70 kB on disk
    line = one_line_error(run("encode", str(big), "-o", str(tmp_path / "b.cmc"), "--mode", "pixel", "--profile",
                              "classic"), 4)
    assert "8200x8200 is 67240000 pixels, above the limit of 33554432" in line


# --- the forged-file fuzzer ---------------------------------------------------------------------------------

def test_a_seeded_forged_file_run_has_no_escapes() -> None:
    from cmcodec.bench import fuzzing

    st = fuzzing.run_forged(150, seed=7)
    assert st.inputs == 150 and st.escapes == 0, st.failures
    assert st.per_target["decode"][0] > 20 and st.per_target["pillow"][0] == 150  # the paths were reached
    assert st.outcomes.get("ok", 0) > 10 and len(st.outcomes) >= 5  # valid files and many kinds of refusal
    assert st.over_5s == 0


def test_the_forged_fuzz_benchmark_runs_and_writes_its_figures(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import fuzz_forged
    finally:
        sys.path.pop(0)
    out = tmp_path / "f.json"
    res = fuzz_forged.main(["--inputs", "30", "--chunk", "15", "--cli", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["complete"] and saved["totals"]["inputs"] == 30 == res["totals"]["inputs"]
    assert saved["cli"]["sent"] == 1 and saved["cli"]["escapes"] == 0
    assert all(esc == 0 for _, esc in saved["totals"]["per_target"].values())


def test_a_script_decoding_at_top_level_runs_once(tmp_path: Path) -> None:
    # the reference decoder's worker must not import the caller's main script again (multiprocessing's spawn
    # does: a script without a __main__ guard ran twice, and its decode then failed in the child)
    from conftest import GOLDEN

    script = tmp_path / "user_script.py"
    script.write_text("import cmcodec\n"
                      f"im = cmcodec.decode(open({str(GOLDEN / 'image_av1_classic.cmc')!r}, 'rb').read())\n"
                      "print('decoded', im.size)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["decoded (192, 128)"]


def test_the_fuzzers_cli_target_catches_a_broken_promise(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every forged file can go through the CLI's decode in process (cli_every): a traceback, an undocumented
    exit code, two lines of error or an output left behind by a failure each count as an escape."""
    import os

    from cmcodec import cli
    from cmcodec.bench import fuzzing

    offline = os.environ.get("HF_HUB_OFFLINE")
    st = fuzzing.run_forged(40, seed=3, cli_every=1, cli_main=cli.main)
    assert st.per_target["cli"] == [40, 0], st.failures
    assert os.environ.get("HF_HUB_OFFLINE") == offline  # set for the run only
    codes = fuzzing._cli_codes()
    data = (Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "pixel_classic.cmc").read_bytes()
    import signal

    on_term = signal.getsignal(signal.SIGTERM)
    assert fuzzing.cli_in_process(data, tmp_path, codes, cli.main) is None
    assert signal.getsignal(signal.SIGTERM) is on_term  # the fuzzing process can still be stopped
    assert fuzzing.cli_in_process(data[:-3], tmp_path, codes, cli.main) is None  # a one-line refusal keeps it

    def two_lines(args: list[str]) -> None:
        print("cmcodec: error: one\nand another", file=sys.stderr)
        raise SystemExit(3)

    assert "2 lines on stderr" in fuzzing.cli_in_process(data, tmp_path, codes, two_lines)

    def odd_code(args: list[str]) -> None:
        raise SystemExit(77)

    assert "not a documented code" in fuzzing.cli_in_process(data, tmp_path, codes, odd_code)

    def traceback(args: list[str]) -> None:
        raise KeyError("boom")

    st = fuzzing.run_forged(5, seed=3, cli_every=1, cli_main=traceback)
    assert st.per_target["cli"] == [5, 5] and st.failures[0][0] == "cli" and "KeyError" in st.failures[0][1]
    assert list(tmp_path.iterdir()) == []  # no input or output left behind


def test_the_fuzzers_alarm_stops_an_input_that_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from cmcodec.bench import fuzzing

    def hangs(data: bytes, *a: object, **k: object) -> None:
        time.sleep(30)

    monkeypatch.setattr(fuzzing.codec, "decode", hangs)
    t0 = time.perf_counter()
    st = fuzzing.run_forged(12, seed=7, pillow_every=1000, alarm_s=1)
    hung = [f for f in st.failures if f[0] == "hang"]
    assert hung and all("still running after 1 s" in f[1] for f in hung)
    assert st.over_5s == len(hung) == st.per_target["decode"][0] and st.inputs == 12
    assert time.perf_counter() - t0 < 2 * len(hung) + 10
