"""Where the command line reads and writes: standard streams (``-``), folders given as -o, suffixes that would
misroute a file, options that contradict each other. The CLI runs in this process (click's runner)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GOLDEN, HOUSE, PARROTS
from PIL import Image

import cmcodec
from cmcodec.cli import main
from cmcodec.core.errors import ConfigError

PIXEL = ["--mode", "pixel", "--profile", "classic"]


def cli(*args: object, stdin: bytes | None = None):
    r = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


def one_line_error(r, code: int, says: str) -> None:
    assert r.exit_code == code, (r.exit_code, r.stderr)
    assert r.stderr.startswith("cmcodec: error:") and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr


# ---- -o as a folder -----------------------------------------------------------------------------------------

def test_single_file_into_an_existing_folder_even_with_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for force in ((), ("--force",)):  # was an IsADirectoryError traceback with --force
        r = cli("encode", PARROTS, "-o", out, *PIXEL, *force)
        assert r.exit_code == 0, r.stderr
        assert (out / "parrots_192x128.cmc").is_file()
    r = cli("decode", out / "parrots_192x128.cmc", "-o", out)
    assert r.exit_code == 0 and (out / "parrots_192x128.decoded.png").is_file(), r.stderr


def test_output_ending_in_a_separator_is_a_new_folder(tmp_path: Path) -> None:
    r = cli("encode", PARROTS, "-o", f"{tmp_path / 'new'}/", *PIXEL)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "new").is_dir() and (tmp_path / "new" / "parrots_192x128.cmc").is_file()
    r = cli("decode", tmp_path / "new" / "parrots_192x128.cmc", "-o", f"{tmp_path / 'png'}/")
    assert r.exit_code == 0 and (tmp_path / "png" / "parrots_192x128.decoded.png").is_file(), r.stderr


def test_decode_to_a_cmc_name_is_refused(tmp_path: Path) -> None:
    # Pillow would save through cmcodec's own plugin, i.e. encode the decoded picture again
    r = cli("decode", GOLDEN / "pixel_classic.cmc", "-o", tmp_path / "out.cmc")
    one_line_error(r, 2, "expected an image file name")
    assert not (tmp_path / "out.cmc").exists()


# ---- options that contradict each other or would be ignored --------------------------------------------------

def test_bpp_with_max_bytes_is_refused(tmp_path: Path) -> None:
    r = cli("encode", PARROTS, "-o", tmp_path / "x.cmc", *PIXEL, "--bpp", "0.5", "--max-bytes", "100")
    one_line_error(r, 2, "give --bpp or --max-bytes, not both")
    assert not (tmp_path / "x.cmc").exists()


@pytest.mark.parametrize(("args", "why"), [
    (["--profile", "classic", "--mode", "pixel"], "profile classic in pixel mode stores none"),
    (["--profile", "classic", "--mode", "auto"], "profile classic in auto mode stores none"),
    (["--profile", "sd-turbo", "--mode", "image"], "profile sd-turbo in image mode stores none"),
])
def test_a_caption_that_would_be_dropped_is_refused(tmp_path: Path, args: list[str], why: str) -> None:
    r = cli("encode", PARROTS, "-o", tmp_path / "x.cmc", *args, "--caption", "two parrots")
    one_line_error(r, 2, why)
    csv = tmp_path / "c.csv"
    csv.write_text("name,text\np.png,two parrots\n", encoding="utf-8")
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PARROTS, src / "p.png")
    one_line_error(cli("encode", src, "-o", tmp_path / "out", *args, "--caption-file", csv), 2, why)
    assert not (tmp_path / "x.cmc").exists() and not (tmp_path / "out").exists()


# ---- standard streams ----------------------------------------------------------------------------------------

def test_encode_and_decode_through_standard_streams(tmp_path: Path) -> None:
    want = cmcodec.encode(PARROTS, mode="pixel", profile="classic")
    r = cli("encode", "-", "-o", "-", *PIXEL, stdin=PARROTS.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == want and "<stdin> -> <stdout>" in r.stderr  # the report line stays off stdout
    r = cli("decode", "-", "-o", "-", stdin=want)
    assert r.exit_code == 0, r.stderr
    got = Image.open(io.BytesIO(r.stdout_bytes))
    assert got.format == "PNG" and got.tobytes() == cmcodec.decode(want).tobytes()
    r = cli("encode", "-", "-o", tmp_path / "p.cmc", *PIXEL, stdin=PARROTS.read_bytes())
    assert r.exit_code == 0 and (tmp_path / "p.cmc").read_bytes() == want, r.stderr
    r = cli("decode", tmp_path / "p.cmc", "-o", "-")
    assert r.exit_code == 0 and r.stdout_bytes.startswith(b"\x89PNG") and not Path("-").exists()
    r = cli("info", "-", "--json", stdin=want)
    assert r.exit_code == 0 and '"mode": "pixel"' in r.stdout


@pytest.mark.parametrize(("args", "code", "says"), [
    (["encode", "{dir}", "-o", "-"], 2, "which -o - (stdout) cannot hold"),
    (["decode", "{dir}", "-o", "-"], 2, "which -o - (stdout) cannot hold"),
    (["encode", "-"], 2, "reading stdin (-) needs -o FILE"),
    (["encode", "-", "-o", "{dir}"], 2, "stdin (-) has no name to put in it"),
    (["encode", str(PARROTS), "-o", "-", "--json"], 2, "where --json would print too"),
    (["decode", "-", "-o", "-"], 2, "expected a file's bytes, found nothing"),
])
def test_streams_are_refused_where_they_cannot_work(tmp_path: Path, args: list[str], code: int, says: str) -> None:
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(PARROTS, d / "p.png")
    shutil.copy(GOLDEN / "pixel_classic.cmc", d / "q.cmc")
    r = cli(*[a.replace("{dir}", str(d)) for a in args], *PIXEL[2:] if args[0] == "encode" else (), stdin=b"")
    one_line_error(r, code, says)


# ---- the Python API ------------------------------------------------------------------------------------------

def test_decode_takes_a_path_too() -> None:
    f = GOLDEN / "pixel_classic.cmc"
    want = cmcodec.decode(f.read_bytes()).tobytes()
    assert cmcodec.decode(str(f)).tobytes() == want and cmcodec.decode(f).tobytes() == want
    with pytest.raises(ConfigError, match=r"expected the bytes of a \.cmc file or its path, found int"):
        cmcodec.decode(3)  # type: ignore[arg-type]
    from cmcodec import codec

    assert [im.tobytes() for _, im in codec.decode_many([f, str(f)])] == [want, want]


# ---- model loading stays quiet -------------------------------------------------------------------------------

def test_no_loading_bars_in_cli_output(tiny_sd: Path, tmp_path: Path) -> None:
    cmc = tmp_path / "h.cmc"
    cmc.write_bytes(cmcodec.encode(HOUSE, mode="text", caption="a red house", profile="sd-turbo"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "cmcodec.cli", "decode", str(cmc), "--model-path", str(tiny_sd),
                        "--device", "cpu"], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout.strip() == f"{cmc} -> {tmp_path / 'h.decoded.png'}: 96x64", (r.stdout, r.stderr)
