"""rd-curve and evaluate over a folder holding one unreadable image: that image fails alone (left out of
every curve or run, listed, exit code 1) and the others are measured, as the README promises."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HOUSE, PARROTS

pytest.importorskip("pyiqa")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copy(HOUSE, d / "a.png")
    shutil.copy(PARROTS, d / "b.png")
    (d / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # a PNG signature, then nothing readable
    return d


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec", *args], capture_output=True, text=True, timeout=600)


def test_rd_curve_leaves_an_unreadable_image_out_and_measures_the_others(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "rd"
    r = cli("rd-curve", str(folder), "-o", str(out), "--codecs", "jpeg", "--scales", "1", "--fast",
            "--metrics", "psnr", "--profiles", "none")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "c.png" in r.stderr and "left out of every curve" in r.stderr
    assert "Traceback" not in r.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["n_images"] == 2 and list(results["settings"]["images_failed"]) == ["c.png"]
    shown = {p["image"] for p in map(json.loads, (out / "points.jsonl").read_text().splitlines())}
    assert shown == {"a.png", "b.png"}
    assert (out / "report.html").exists()


def test_evaluate_leaves_an_unreadable_image_out_and_scores_the_others(folder: Path, tmp_path: Path) -> None:
    caps = tmp_path / "caps.csv"
    caps.write_text(",name,text\n0,a.png,A red house.\n1,b.png,Two parrots.\n2,c.png,Nothing.\n", encoding="utf-8")
    out = tmp_path / "ev"
    r = cli("evaluate", str(folder), "-o", str(out), "--captions", str(caps), "--profile", "classic",
            "--modes", "pixel", "--fr", "psnr", "--nr", "piqe")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "c (caps)" in r.stderr and "unreadable or truncated image" in r.stderr
    assert "Traceback" not in r.stderr
    scores = json.loads((out / "caps__classic" / "scores.json").read_text())
    assert set(scores["images_failed"]) == {"c"}
    assert sorted(p.name for p in (out / "caps__classic" / "pixel").glob("*.cmc")) == ["a.cmc", "b.cmc"]
