"""rd-curve: every baseline round-trips, rate targeting, BD-rate, resume, and the command itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HOUSE, PARROTS
from PIL import Image

from cmcodec.bench import metrics, rd
from cmcodec.core import refcodecs as baselines

CODECS = list(baselines.BASELINES)
GOOD = {"jpeg": 75, "webp": 75, "avif": 60, "jxl": 10, "j2k": 20, "heif": 60, "hevc": 28, "av1": 30, "vvc": 30}


@pytest.mark.parametrize("name", CODECS)
def test_every_baseline_roundtrips(name: str) -> None:
    b = baselines.BASELINES[name]
    if b.available():
        pytest.skip(b.available())
    img = Image.open(PARROTS).convert("RGB")
    data = b.encode(img, GOOD[name])
    out = b.decode(data).crop((0, 0, *img.size))
    assert out.size == img.size
    diff = np.abs(np.asarray(out, dtype=int) - np.asarray(img, dtype=int)).mean()
    assert diff < 20, f"{name} decoded something else (mean abs diff {diff:.1f})"
    assert 0 <= b.header_bytes(data) < len(data)
    assert b.version()


def test_smaller_settings_give_smaller_files() -> None:
    img = Image.open(PARROTS).convert("RGB")
    for name in ("jpeg", "av1", "j2k"):
        b = baselines.BASELINES[name]
        s = b.settings_small_to_large()
        assert len(b.encode(img, s[0])) < len(b.encode(img, s[-1]))


def test_header_accounting_matches_known_structures() -> None:
    img = Image.open(PARROTS).convert("RGB")
    jpeg = baselines.BASELINES["jpeg"].encode(img, 50)
    n = baselines.BASELINES["jpeg"].header_bytes(jpeg)
    assert jpeg[n - 2 - 14 : n - 2][:2] == b"\xff\xda" or b"\xff\xda" in jpeg[:n]  # SOS ends the header
    av1 = baselines.BASELINES["av1"].encode(img, 50)
    assert 5 < baselines.BASELINES["av1"].header_bytes(av1) < 30  # temporal delimiter + sequence header
    hevc = baselines.BASELINES["hevc"].encode(img, 40)
    assert 40 < baselines.BASELINES["hevc"].header_bytes(hevc) < 200  # VPS + SPS + PPS


@pytest.mark.parametrize("name,scale", [("jpeg", 1), ("webp", 1), ("av1", 2), ("j2k", 1), ("hevc", 1)])
def test_rate_targeting_lands_within_10_percent(name: str, scale: int) -> None:
    b = baselines.BASELINES[name]
    img = Image.open(PARROTS).convert("RGB")
    small = img if scale == 1 else img.resize((img.width // scale, img.height // scale))
    settings = b.settings_small_to_large()
    lo, hi = len(b.encode(small, settings[0])), len(b.encode(small, settings[-1]))
    for target in (lo * 2, (lo + hi) // 3):  # reachable targets
        q = rd.find_setting(lambda s: len(b.encode(small, s)), settings, target)
        assert q is not None
        assert abs(len(b.encode(small, q)) - target) <= 0.1 * target, (name, target, q)
    assert rd.find_setting(lambda s: len(b.encode(small, s)), settings, lo / 3) is None  # below the floor


def test_bd_rate_of_a_curve_against_itself_is_zero_and_shifted_curve_is_negative() -> None:
    c = {"codec": "x", "scale": 1, "mode": "", "bpp": [0.01, 0.02, 0.04, 0.08],
         "metrics": {"psnr": [24.0, 26.5, 28.7, 31.0]}}
    half = {**c, "bpp": [r / 2 for r in c["bpp"]]}
    far = {**c, "metrics": {"psnr": [40.0, 41.0, 42.0, 43.0]}}
    bd = rd.bd_rates({"a": c, "b": half, "c": far}, "a", ["psnr"], {"psnr": False})
    assert bd["a"]["psnr"]["bd_rate"] == 0.0
    assert bd["b"]["psnr"]["bd_rate"] == pytest.approx(-50.0, abs=0.5)
    assert bd["c"]["psnr"]["bd_rate"] is None and "do not overlap" in bd["c"]["psnr"]["note"]


def test_metrics_load_offline_and_report_missing_weights() -> None:
    loaded, skipped = metrics.load(["psnr", "ssim", "piqe", "no_such_metric"])
    assert set(loaded) == {"psnr", "ssim", "piqe"} and loaded["piqe"].mode == "NR"
    assert "not a pyiqa metric" in skipped["no_such_metric"]
    img = Image.open(PARROTS).convert("RGB")
    assert loaded["psnr"](img, img) > 60
    assert loaded["ssim"](img, img) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("jobs", [1, 2])
def test_sweep_resumes_without_recomputing(tmp_path: Path, jobs: int) -> None:
    curves = rd.make_curves(["jpeg", "av1"], ["1", "1/2"], ["classic"], ["image"])
    units = [rd.Unit(str(p), c, [0.3, 1.0, 2.0], ("psnr",)) for p in (PARROTS, HOUSE) for c in curves]
    assert rd.sweep(units[:3], tmp_path, jobs) == 3
    first = (tmp_path / rd.POINTS_FILE).read_text()
    assert rd.sweep(units, tmp_path, jobs) == len(units) - 3  # only the rest runs
    assert (tmp_path / rd.POINTS_FILE).read_text().startswith(first)
    assert rd.sweep(units, tmp_path, jobs) == 0
    rows = rd.load_points(tmp_path)
    assert {(r["image"], r["curve"]) for r in rows} == {(Path(u.image).name, u.curve.name) for u in units}


def test_rd_curve_command(tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    shutil.copy(PARROTS, src)
    shutil.copy(HOUSE, src)
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "cmcodec.cli", "rd-curve", str(src), "-o", str(out), "--codecs", "jpeg,av1,j2k",
           "--scales", "1,1/2", "--metrics", "psnr,ssim,lpips", "--targets", "0.3,0.6,1.2,2.4", "--anchor", "av1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "skipping metric lpips" in r.stderr  # no weights here: said, not silently dropped
    for f in ("points.csv", "results.json", "rd_bpp.png", "rd_bpp.svg", "rd_bpp_no_headers.png", "bd_rate.md"):
        assert (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    assert res["bd_rate"]["av1"]["psnr"]["bd_rate"] == 0.0
    assert "lpips" in res["metrics_skipped"]
    av1 = res["curves"]["av1"]
    assert av1["images"] == 2 and len(av1["bpp"]) >= 2 and all(b > a for a, b in zip(av1["bpp"], av1["bpp"][1:]))
    assert all(x < y for x, y in zip(av1["bpp_no_headers"], av1["bpp"]))
    assert "cmc:classic:image" in res["curves"] or any(s["curve"].startswith("cmc:") for s in res["skipped"])
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0 and "0 units computed" in r2.stdout  # resumed: nothing recomputed


def test_failed_units_are_retried_on_resume(tmp_path: Path) -> None:
    curve = rd.make_curves(["jpeg"], ["1"], [], [])[0]
    unit = rd.Unit(str(PARROTS), curve, [1.0], ("psnr",))
    (tmp_path / rd.POINTS_FILE).write_text(json.dumps({"image": PARROTS.name, "curve": "jpeg", "skipped": "boom",
                                                       "error": True}) + "\n")
    assert rd.sweep([unit], tmp_path) == 1
    rows = rd.load_points(tmp_path)
    assert len(rows) == 1 and "skipped" not in rows[0] and rows[0]["bytes"] > 0


def test_neural_profile_points_with_a_local_model(tiny_sd: Path) -> None:
    curve = rd.make_curves([], [], ["sd-turbo"], ["text", "full"])
    for c in curve:
        unit = rd.Unit(str(PARROTS), c, [0.01, 0.3], ("psnr",), captions={PARROTS.name: "Two parrots on a branch."},
                       model_paths={"sd-turbo": str(tiny_sd)})
        rows = rd.run_unit(unit)
        assert rows and all("skipped" not in r for r in rows), rows
        assert all(r["bytes"] * 8 / (192 * 128) <= r["target_bpp"] for r in rows)  # budgets hold
        assert all(r["psnr"] > 0 for r in rows)


def test_neural_profile_without_weights_is_skipped_with_the_reason() -> None:
    unit = rd.Unit(str(PARROTS), rd.make_curves([], [], ["sd-turbo"], ["text"])[0], [0.3], ("psnr",),
                   captions={PARROTS.name: "Two parrots."})
    rows = rd.run_unit(unit)
    assert len(rows) == 1 and "stabilityai/sd-turbo" in rows[0]["skipped"] and rows[0]["error"]


def test_av1_baseline_survives_sizes_that_hung_svt_av1() -> None:
    code = ("from PIL import Image; import numpy as np; from cmcodec.core import refcodecs as baselines\n"
            "b = baselines.BASELINES['av1']\n"
            "for w, h in ((16, 66), (24, 66), (66, 16)):\n"
            "    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))\n"
            "    out = b.decode(b.encode(img, 50))\n"
            "    assert out.size == baselines.padded_size(w, h, *baselines.AV1_PAD), out.size\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
