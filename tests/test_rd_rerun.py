"""rd-curve and evaluate reruns: a stored point or score is reused only when made by the same settings, the
results describe exactly the points they show, --offline makes no network attempt."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import HOUSE, PARROTS

from cmcodec.bench import metrics, rd
from cmcodec.core import refcodecs

TARGETS = [0.5, 1.0, 2.0]


def _units(curves: list[rd.Curve], names: tuple[str, ...] = ("psnr",), effort: str = "best") -> list[rd.Unit]:
    return [rd.Unit(str(p), c, TARGETS, names, effort=effort) for p in (PARROTS, HOUSE) for c in curves]


def _made_by(out: Path) -> dict[tuple[str, str], set[str]]:
    got: dict[tuple[str, str], set[str]] = {}
    for r in rd.current_rows(rd.load_points(out)):
        got.setdefault((r["image"], r["curve"]), set()).add(r["made_by"])
    return got


def test_identical_rerun_reuses_everything_and_force_redoes_it(tmp_path: Path) -> None:
    units = _units(rd.make_curves(["jpeg"], ["1", "1/2"], [], []))
    assert rd.sweep(units, tmp_path) == rd.SweepCount(ran=4)
    first = rd.load_points(tmp_path)
    assert rd.sweep(_units(rd.make_curves(["jpeg"], ["1", "1/2"], [], [])), tmp_path) == rd.SweepCount(reused=4)
    assert rd.load_points(tmp_path) == first
    assert rd.sweep(units, tmp_path, force=True) == rd.SweepCount(ran=4)
    assert len(rd.current_rows(rd.load_points(tmp_path))) == len(first)  # the new write replaces the old one


def test_other_effort_is_not_reused(tmp_path: Path) -> None:
    curves = rd.make_curves(["webp"], ["1"], [], [])
    rd.sweep(_units(curves, effort="fast"), tmp_path)
    fast = _made_by(tmp_path)
    assert rd.sweep(_units(curves, effort="best"), tmp_path) == rd.SweepCount(ran=2)
    best = _made_by(tmp_path)
    assert all(len(v) == 1 for v in best.values()) and not set.intersection(*fast.values(), *best.values())
    assert all(next(iter(best[k])) == u.key() for u in _units(curves) for k in [(Path(u.image).name, "webp")])


def test_other_codec_version_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curves = rd.make_curves(["jpeg"], ["1"], [], [])
    rd.sweep(_units(curves), tmp_path)
    row = refcodecs.CODECS["jpeg"]
    monkeypatch.setitem(refcodecs.CODECS, "jpeg", dataclasses.replace(row, version=lambda: "Pillow 0.0-other"))
    assert rd.sweep(_units(curves), tmp_path) == rd.SweepCount(ran=2)


def test_other_scale_or_targets_are_not_reused(tmp_path: Path) -> None:
    rd.sweep(_units(rd.make_curves(["jpeg"], ["1"], [], [])), tmp_path)
    assert rd.sweep(_units(rd.make_curves(["jpeg"], ["1/2"], [], [])), tmp_path) == rd.SweepCount(ran=2)
    other = [rd.Unit(str(p), c, [0.5, 1.0], ("psnr",)) for p in (PARROTS, HOUSE)
             for c in rd.make_curves(["jpeg"], ["1"], [], [])]
    assert rd.sweep(other, tmp_path) == rd.SweepCount(ran=2)


def test_a_new_metric_on_stored_points_is_computed(tmp_path: Path) -> None:
    curves = rd.make_curves(["jpeg"], ["1"], ["classic"], ["pixel"])
    rd.sweep(_units(curves), tmp_path)
    before = {(r["image"], r["curve"], r["setting"]): r for r in rd.current_rows(rd.load_points(tmp_path))}
    assert rd.sweep(_units(curves, ("psnr", "ssim")), tmp_path) == rd.SweepCount(topped_up=4)
    rows = rd.current_rows(rd.load_points(tmp_path))
    assert {(r["image"], r["curve"], r["setting"]) for r in rows} == set(before)  # the same points
    fresh = tmp_path / "fresh"
    rd.sweep(_units(curves, ("psnr", "ssim")), fresh)
    want = {(r["image"], r["curve"], r["setting"]): r["ssim"] for r in rd.current_rows(rd.load_points(fresh))}
    assert {(r["image"], r["curve"], r["setting"]): r["ssim"] for r in rows} == want  # as if computed at once
    assert all(r["psnr"] == before[(r["image"], r["curve"], r["setting"])]["psnr"] for r in rows)
    assert rd.sweep(_units(curves, ("psnr", "ssim")), tmp_path) == rd.SweepCount(reused=4)


def test_a_metric_of_other_weights_is_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curves = rd.make_curves(["jpeg"], ["1"], [], [])
    rd.sweep(_units(curves), tmp_path)
    rd._METRICS.clear()
    monkeypatch.setattr(metrics, "version", lambda: "0.0-other")  # pyiqa's version is in each metric's key
    try:
        assert rd.sweep(_units(curves), tmp_path) == rd.SweepCount(topped_up=2)
    finally:
        rd._METRICS.clear()


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec.cli", *args], capture_output=True, text=True, timeout=600,
                          env=env)


def test_rd_curve_rerun_describes_the_points_it_shows(tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    shutil.copy(HOUSE, src)
    out = tmp_path / "res"
    base = ["rd-curve", str(src), "-o", str(out), "--codecs", "jpeg,webp", "--profiles", "none", "--metrics",
            "psnr", "--targets", "0.5,1,2"]
    r = _cli(*base, "--scales", "1,1/2", "--fast")
    assert r.returncode == 0, r.stderr
    r = _cli(*base, "--scales", "1", "--metrics", "ssim")
    assert r.returncode == 0, r.stderr
    assert "2 units computed, 0 topped up with new metrics, 0 reused" in r.stdout  # fast points not reused
    res = json.loads((out / "results.json").read_text())
    assert res["fast"] is False and res["settings"]["effort"] == "best"
    assert set(res["curves"]) == {"jpeg", "webp"} and set(res["bd_rate"]) == {"jpeg", "webp"}
    assert all(set(c["metrics"]) == {"psnr", "ssim"} for c in res["curves"].values())
    csv = (out / "points.csv").read_text()
    assert "@1/2" not in csv  # the earlier run's other scale is not in what this run shows
    assert "--force" in _cli("rd-curve", "--help").stdout and "--force" in _cli("evaluate", "--help").stdout


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.seen.append(self.path)
        self.send_error(404)

    do_HEAD = do_GET

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture()
def hub(tmp_path: Path):
    """A local HTTP server as the hub (HF_ENDPOINT) that records every request; an empty torch cache."""
    _Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{srv.server_port}", TORCH_HOME=str(tmp_path / "torch"),
               HF_HOME=str(tmp_path / "hf"))
    yield env
    srv.shutdown()


def test_offline_rerun_makes_no_network_attempt(tmp_path: Path, hub: dict) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    shutil.copy(HOUSE, src)
    args = ["rd-curve", str(src), "-o", str(tmp_path / "res"), "--codecs", "jpeg", "--scales", "1", "--profiles",
            "none", "--metrics", "psnr,niqe", "--targets", "1,2"]
    r = _cli(*args, env=hub)  # online: niqe's parameters are asked of the hub (this check can fail)
    assert r.returncode == 0, r.stderr
    assert _Recorder.seen, "the metric made no request: this test would not see one"
    _Recorder.seen = []
    r = _cli(*args, "--offline", env=hub)
    assert r.returncode == 0, r.stderr
    assert _Recorder.seen == []
    lines = [x for x in r.stderr.splitlines() if "skipping metric niqe" in x]
    assert len(lines) == 1 and "offline" in lines[0] and "--metric-weights" in lines[0]
    assert "1 reused" in r.stdout


def test_a_missing_python_module_is_named_not_called_missing_weights() -> None:
    import importlib.util

    e = ModuleNotFoundError("No module named 'pkg_resources'", name="pkg_resources")
    why = metrics.why_not_loaded(e)
    assert "pkg_resources" in why and "setuptools" in why and "weights" not in why
    if importlib.util.find_spec("pkg_resources") is None and importlib.util.find_spec("clip") is not None:
        assert metrics.load(["clipiqa"])[1]["clipiqa"] == why  # clip imports pkg_resources, missing here


def test_a_metric_that_cannot_score_a_picture_leaves_the_points_and_says_why() -> None:
    (curve,) = rd.make_curves(["jpeg"], ["1"], [], [])
    rows = rd.run_unit(rd.Unit(str(HOUSE), curve, [1.0, 2.0], ("psnr", "ms_ssim")))  # 96x64: too small for MS-SSIM
    assert len(rows) == 2 and all("psnr" in r and "ms_ssim" not in r for r in rows), rows
    assert all("96x64 picture" in r["metric_errors"]["ms_ssim"] for r in rows)
