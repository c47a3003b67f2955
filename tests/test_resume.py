"""Folder reruns reuse an output only when everything that decides it is unchanged (the file's header and the
run record beside the outputs); otherwise it is redone with the reason. No output lands on an input or on
another output. The CLI runs in this process (click's runner): a rerun costs no interpreter start."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import HOUSE, PARROTS

import cmcodec
from cmcodec.cli import main


def cli(*args: object) -> tuple[int, list[dict], str]:
    """(exit code, the --json records, stderr) of one in-process CLI call."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    try:
        rows = json.loads(r.stdout) if r.stdout.strip() else []
    except ValueError:
        rows = []
    return r.exit_code, rows, r.stderr


def images(tmp_path: Path, n: int = 2) -> Path:
    src = tmp_path / "img"
    src.mkdir()
    for i in range(n):
        shutil.copy(PARROTS if i % 2 else HOUSE, src / f"p{i}.png")
    return src


def stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if not p.name.startswith(".")}


def statuses(rows: list[dict]) -> list[str]:
    return [r["status"] for r in rows]


def rerun_redoes(args: list[object], changed: list[object], says: str, out: Path) -> list[dict]:
    """Run args, rerun them unchanged (everything reused), then with changed options (everything redone,
    the reason saying `says`), then unchanged again (reused)."""
    code, rows, err = cli(*args, "--json")
    assert code == 0 and statuses(rows) == ["written"] * len(rows), err
    before = stamps(out)
    code, rows, err = cli(*args, "--json")
    assert code == 0 and statuses(rows) == ["skipped"] * len(rows), err
    assert stamps(out) == before  # nothing rewritten
    code, rows, err = cli(*args, *changed, "--json")
    assert code == 0 and statuses(rows) == ["redone"] * len(rows), (rows, err)
    assert all(says in r["reason"] for r in rows), rows
    code, again, err = cli(*args, *changed, "--json")
    assert code == 0 and statuses(again) == ["skipped"] * len(again), err
    return rows


def test_budget_change_is_redone(tmp_path: Path) -> None:
    src, out = images(tmp_path), tmp_path / "cmc"
    args = ["encode", src, "-o", out, "--mode", "pixel", "--profile", "classic"]
    rows = rerun_redoes([*args, "--bpp", "0.5"], ["--bpp", "0.1"], "--bpp 0.5 -> 0.1", out)
    assert all(r["bpp"] <= 0.1 for r in rows)  # the new files meet the new budget
    code, rows, _ = cli(*args, "--max-bytes", "40", "--json")  # another kind of budget
    assert code == 0 and statuses(rows) == ["redone"] * 2 and all(r["bytes"] <= 40 for r in rows)
    assert "--max-bytes none -> 40" in rows[0]["reason"]


def test_seed_change_is_redone(tmp_path: Path) -> None:
    src, out = images(tmp_path), tmp_path / "cmc"
    rerun_redoes(["encode", src, "-o", out, "--mode", "pixel", "--profile", "classic"], ["--seed", "7"],
                 "--seed 0 -> 7", out)
    assert cmcodec.read_header((out / "p0.cmc").read_bytes()).seed == 7


def test_mode_change_is_redone(tmp_path: Path) -> None:
    src, out = images(tmp_path), tmp_path / "cmc"
    rerun_redoes(["encode", src, "-o", out, "--profile", "classic", "--mode", "pixel"], ["--mode", "image"],
                 "--mode pixel -> image", out)


def test_caption_change_is_redone(tmp_path: Path) -> None:
    src, out = images(tmp_path), tmp_path / "cmc"
    # a neural profile's text mode: no model is loaded to encode a given caption
    args = ["encode", src, "-o", out, "--profile", "sd-turbo", "--mode", "text"]
    code, rows, err = cli(*args, "--caption", "two parrots on a branch", "--json")
    assert code == 0 and statuses(rows) == ["written"] * 2, err
    code, rows, _ = cli(*args, "--caption", "two parrots on a branch", "--json")
    assert statuses(rows) == ["skipped"] * 2
    code, rows, _ = cli(*args, "--caption", "a red house", "--json")
    assert statuses(rows) == ["redone"] * 2 and all(r["reason"] == "caption changed" for r in rows)
    # a captions CSV: only the image whose caption changed is redone
    csv = tmp_path / "c.csv"
    csv.write_text("name,text\np0.png,a red house\np1.png,two parrots\n", encoding="utf-8")
    code, rows, _ = cli(*args, "--caption-file", csv, "--json")
    assert statuses(rows) == ["skipped", "redone"]
    csv.write_text("name,text\np0.png,a red house with windows\np1.png,two parrots\n", encoding="utf-8")
    code, rows, _ = cli(*args, "--caption-file", csv, "--json")
    assert statuses(rows) == ["redone", "skipped"]
    from cmcodec.core import textcode  # the file holds the new caption

    h = cmcodec.read_header((out / "p0.cmc").read_bytes())
    sec = h.section("caption")
    assert textcode.decode(sec.payload, sec.coder_id) == "a red house with windows"


def test_reference_codec_change_is_redone(tmp_path: Path) -> None:
    from cmcodec.core import guidance

    usable = [n for n, c in guidance.REF_CODECS.items() if c.available() is None]
    if len(usable) < 2:
        pytest.skip(f"two usable reference codecs needed, found {usable}")
    src, out = images(tmp_path), tmp_path / "cmc"
    rerun_redoes(["encode", src, "-o", out, "--mode", "image", "--profile", "classic", "--bpp", "0.5",
                  "--ref-codec", usable[0]], ["--ref-codec", usable[1]],
                 f"reference codec {usable[0]} -> {usable[1]}", out)


def test_input_change_and_damaged_output_are_redone(tmp_path: Path) -> None:
    src, out = images(tmp_path, 3), tmp_path / "cmc"
    args = ["encode", src, "-o", out, "--mode", "pixel", "--profile", "classic", "--json"]
    assert cli(*args)[0] == 0
    shutil.copy(PARROTS, src / "p0.png")  # another picture under the same name
    good = (out / "p2.cmc").read_bytes()
    (out / "p2.cmc").write_bytes(good[:-2])  # damaged (atomic writes never leave one; a disk might)
    (out / "p1.cmc").unlink()
    code, rows, err = cli(*args)
    assert code == 0, err
    assert statuses(rows) == ["redone", "written", "redone"]
    assert rows[0]["reason"] == "input image changed" and "changed since it was written" in rows[2]["reason"]
    assert (out / "p2.cmc").read_bytes() == good
    assert "1 written, 2 redone (options or output changed), 0 skipped" in err


def test_an_output_the_record_does_not_list_is_refused_without_force(tmp_path: Path) -> None:
    src, out = images(tmp_path), tmp_path / "cmc"
    out.mkdir()
    mine = b"a file cmcodec did not make"
    (out / "p0.cmc").write_bytes(mine)
    code, rows, _ = cli("encode", src, "-o", out, "--mode", "pixel", "--profile", "classic", "--json")
    assert code == 1 and statuses(rows) == ["failed", "written"]
    assert "does not list it" in rows[0]["error"] and (out / "p0.cmc").read_bytes() == mine
    code, rows, _ = cli("encode", src, "-o", out, "--mode", "pixel", "--profile", "classic", "--force", "--json")
    assert code == 0 and statuses(rows) == ["written"] * 2 and rows[0]["reason"] == "--force"


def test_two_images_of_one_name_are_refused_before_any_work(tmp_path: Path) -> None:
    src = images(tmp_path)
    shutil.copy(HOUSE, src / "p0.jpg")  # p0.png and p0.jpg would both be p0.cmc
    for force in ((), ("--force",)):
        code, _, err = cli("encode", src, "-o", tmp_path / "cmc", "--mode", "pixel", "--profile", "classic", *force)
        assert code == 10 and "p0.jpg" in err and "p0.png" in err and "would both be written" in err
        assert err.count("\n") == 1 and not (tmp_path / "cmc").exists()


def test_folder_decode_never_writes_on_the_encoded_images(tmp_path: Path) -> None:
    src = images(tmp_path)
    originals = {p.name: p.read_bytes() for p in src.iterdir()}
    assert cli("encode", src, "-o", src, "--mode", "pixel", "--profile", "classic")[0] == 0  # into the same folder
    for force in ((), ("--force",)):
        code, rows, err = cli("decode", src, "-o", src, *force, "--json")
        assert code == 0, err
        assert [Path(r["output"]).name for r in rows] == ["p0.decoded.png", "p1.decoded.png"]
        assert all((src / n).read_bytes() == b for n, b in originals.items())
    # a rerun of the encode takes the decoded pictures (recorded as outputs) for no input of its own
    code, rows, err = cli("encode", src, "-o", src, "--mode", "pixel", "--profile", "classic", "--json")
    assert code == 0 and [Path(r["input"]).name for r in rows] == ["p0.png", "p1.png"], err
    # an encoded image that a decoded name would hit (x.decoded.png beside x.png): refused, --force or not
    shutil.copy(HOUSE, src / "p0.decoded.png")
    cmc = tmp_path / "cmc"
    assert cli("encode", src, "-o", cmc, "--mode", "pixel", "--profile", "classic")[0] == 0
    before = (src / "p0.decoded.png").read_bytes()
    for force in ((), ("--force",)):
        code, _, err = cli("decode", cmc, "-o", src, *force)
        assert code == 10 and "p0.decoded.png, an image encoded to" in err and err.count("\n") == 1
        assert (src / "p0.decoded.png").read_bytes() == before


def test_folder_decode_resume(tmp_path: Path) -> None:
    src, cmc, png = images(tmp_path, 3), tmp_path / "cmc", tmp_path / "png"
    assert cli("encode", src, "-o", cmc, "--mode", "pixel", "--profile", "classic")[0] == 0
    code, rows, err = cli("decode", cmc, "-o", png, "--json")
    assert code == 0 and statuses(rows) == ["written"] * 3, err
    before = stamps(png)
    # a model-free file's picture depends on nothing but the file: precision and device do not redo it
    code, rows, err = cli("decode", cmc, "-o", png, "--dtype", "bfloat16", "--json")
    assert code == 0 and statuses(rows) == ["skipped"] * 3 and stamps(png) == before, err
    (png / "p1.decoded.png").write_bytes((png / "p1.decoded.png").read_bytes()[:100])
    assert cli("encode", src, "-o", cmc, "--mode", "pixel", "--profile", "classic", "--seed", "3")[0] == 0
    code, rows, err = cli("decode", cmc, "-o", png, "--json")
    assert code == 0 and statuses(rows) == ["redone"] * 3, err
    assert all(r["reason"] == "input image changed" for r in (rows[0], rows[2]))
    assert "changed since it was written" in rows[1]["reason"]


@pytest.mark.parametrize("change", ["words", "captioner", "captioner files"])
def test_captioner_options_redo(tiny_blip: Path, tmp_path: Path, change: str) -> None:
    src, out = images(tmp_path, 1), tmp_path / "cmc"
    blip = tmp_path / "blip"
    shutil.copytree(tiny_blip, blip)
    args = ["encode", src, "-o", out, "--mode", "text", "--profile", "sd-turbo", "--i2t", blip, "--device", "cpu",
            "--words", "8"]
    if change == "words":
        rerun_redoes(args, ["--words", "5"], "--words 8 -> 5", out)
        return
    assert cli(*args)[0] == 0
    assert statuses(cli(*args, "--json")[1]) == ["skipped"]
    if change == "captioner":  # the same weights in another folder: another captioner
        other = tmp_path / "blip2"
        shutil.copytree(tiny_blip, other)
        args[args.index(blip)] = other
    else:  # new weights in the same folder
        st = (blip / "config.json").stat()
        os.utime(blip / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    code, rows, err = cli(*args, "--json")
    assert code == 0 and statuses(rows) == ["redone"] and rows[0]["reason"] == "captioner changed", err


def test_single_file_decode_never_writes_on_the_image_a_run_encoded(tmp_path: Path) -> None:
    src, cmc = images(tmp_path), tmp_path / "cmc"
    assert cli("encode", src, "-o", cmc, "--mode", "pixel", "--profile", "classic")[0] == 0
    before = (src / "p0.png").read_bytes()
    code, _, err = cli("decode", cmc / "p0.cmc", "-o", src / "p0.png", "--force")
    assert code == 10 and "an image encoded to" in err and (src / "p0.png").read_bytes() == before
