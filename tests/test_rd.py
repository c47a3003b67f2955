"""rd-curve: every baseline round-trips, rate targeting, BD-rate, resume, and the command itself."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import HOUSE, PARROTS
from PIL import Image

from cmcodec.bench import metrics, rd
from cmcodec.bench.baselines import find_setting
from cmcodec.core import refcodecs as baselines

CODECS = list(baselines.CODECS)
GOOD = {"jpeg": 75, "webp": 75, "avif": 60, "jxl": 10, "j2k": 20, "heif": 60, "hevc": 28, "av1": 30, "vvc": 30}


@pytest.mark.parametrize("name", CODECS)
def test_every_baseline_roundtrips(name: str) -> None:
    b = baselines.CODECS[name]
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
        b = baselines.CODECS[name]
        s = b.settings_small_to_large()
        assert len(b.encode(img, s[0])) < len(b.encode(img, s[-1]))


def test_header_accounting_matches_known_structures() -> None:
    img = Image.open(PARROTS).convert("RGB")
    jpeg = baselines.CODECS["jpeg"].encode(img, 50)
    n = baselines.CODECS["jpeg"].header_bytes(jpeg)
    # the header is everything up to the end of the SOS segment (scan data follows) plus the 2-byte EOI
    sos = jpeg.rfind(b"\xff\xda", 0, n)
    assert sos > 0 and sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big") == n - 2
    assert jpeg[-2:] == b"\xff\xd9" and n < len(jpeg) // 2  # EOI counted, the scan data not
    av1 = baselines.CODECS["av1"].encode(img, 50)
    assert 5 < baselines.CODECS["av1"].header_bytes(av1) < 30  # temporal delimiter + sequence header
    hevc = baselines.CODECS["hevc"].encode(img, 40)
    assert 40 < baselines.CODECS["hevc"].header_bytes(hevc) < 200  # VPS + SPS + PPS


@pytest.mark.parametrize("name,scale", [("jpeg", 1), ("webp", 1), ("av1", 2), ("j2k", 1), ("hevc", 1)])
def test_rate_targeting_lands_within_10_percent(name: str, scale: int) -> None:
    b = baselines.CODECS[name]
    img = Image.open(PARROTS).convert("RGB")
    small = img if scale == 1 else img.resize((img.width // scale, img.height // scale))
    settings = b.settings_small_to_large()
    lo, hi = len(b.encode(small, settings[0])), len(b.encode(small, settings[-1]))
    for target in (lo * 2, (lo + hi) // 3):  # reachable targets
        q = find_setting(lambda s: len(b.encode(small, s)), settings, target)
        assert q is not None
        assert abs(len(b.encode(small, q)) - target) <= 0.1 * target, (name, target, q)
    assert find_setting(lambda s: len(b.encode(small, s)), settings, lo / 3) is None  # below the floor


def _pts(curve: str, image: str, bpps: list[float], psnr: Callable[[float], float], shift: float = 1.0) -> list[dict]:
    """Points at rates bpps x shift with the quality psnr(bpp) (shift 0.5: the same quality at half the rate)."""
    return [{"image": image, "curve": curve, "codec": curve, "scale": 1, "mode": "", "target_bpp": b * shift,
             "bpp": b * shift, "psnr": psnr(b)} for b in bpps]


def test_bd_rate_per_image_then_averaged_over_the_images_both_curves_cover() -> None:
    rates = [0.01, 0.02, 0.04, 0.08, 0.16]

    def q(base: float) -> Callable[[float], float]:
        return lambda b: base + 6.0 * math.log2(b / 0.01)  # 6 dB per doubling of the rate

    rows = (_pts("x", "a", rates, q(24)) + _pts("y", "a", rates, q(24), 0.5)  # a: half the rate
            + _pts("x", "b", rates, q(30)) + _pts("y", "b", rates, q(30), 0.8)  # b: 80% of it
            + _pts("x", "c", rates, q(20)) + _pts("y", "c", rates, q(60)))  # c: ranges never overlap
    per = rd.per_image_rows(rows, [])
    bd = rd.bd_rates(per, "x", ["psnr"], {"psnr": False})
    e = bd["y"]["psnr"]
    assert e["per_image"]["a"] == pytest.approx(-50.0, abs=0.01)
    assert e["per_image"]["b"] == pytest.approx(-20.0, abs=0.01)
    assert e["bd_rate"] == pytest.approx(-35.0, abs=0.01) and (e["images"], e["of"]) == (2, 3)
    assert "c" not in e["per_image"] and "1 image: quality ranges do not overlap" in e["note"]
    assert bd["x"]["psnr"]["bd_rate"] == 0.0
    for r in rows:  # a lower-better score of the same quality gives the same BD-rates
        r["dist"] = 1.0 - r["psnr"] / 100
    lower = rd.bd_rates(rd.per_image_rows(rows, []), "x", ["dist"], {"dist": True})["y"]["dist"]
    assert lower["per_image"] == e["per_image"]
    table = rd.bd_table(bd, "x", {})
    assert "-35.0 [2/3 images]" in table and "n/a" not in table


def test_bd_rate_n_a_cells_are_sentences_and_envelope_rows_pool_scales() -> None:
    rates = [0.01, 0.02, 0.04, 0.08]
    full = _pts("jpeg", "a", rates, lambda b: 20 + 5 * math.log2(b / 0.01))
    half = _pts("jpeg@1/2", "a", [0.01, 0.02, 0.04], lambda b: 20 + 5 * math.log2(b / 0.01), 0.5)  # better low
    for r in half:
        r["codec"] = "jpeg"
    for r in full:
        r["codec"] = "jpeg"
    curves = rd.make_curves(["jpeg"], ["1", "1/2"], [], [])
    per = rd.per_image_rows(full + half + _pts("av1", "a", [0.01], lambda b: 30.0), curves)
    assert set(per) == {"jpeg", "jpeg@1/2", "jpeg@best", "av1"}
    assert len(per["jpeg@best"]["a"]) == len(full) + len(half)
    bd = rd.bd_rates(per, "jpeg", ["psnr"], {"psnr": False})
    assert bd["jpeg@best"]["psnr"]["bd_rate"] < 0  # the envelope beats its own full-size variant
    assert bd["av1"]["psnr"]["bd_rate"] is None
    assert bd["av1"]["psnr"]["note"] == "no image where both curves can be compared (1 image: fewer than 2 points)"
    empty = rd.bd_rates({"jpeg": {}, "av1": per["av1"]}, "jpeg", ["psnr"], {"psnr": False})
    assert empty["av1"]["psnr"]["note"] == "the anchor curve has no points to compare with"


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
    assert rd.sweep(units[:3], tmp_path, jobs).ran == 3
    first = (tmp_path / rd.POINTS_FILE).read_text()
    assert rd.sweep(units, tmp_path, jobs) == rd.SweepCount(ran=len(units) - 3, reused=3)  # only the rest runs
    assert (tmp_path / rd.POINTS_FILE).read_text().startswith(first)
    assert rd.sweep(units, tmp_path, jobs) == rd.SweepCount(reused=len(units))
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
    assert av1["images"] == 2 and len(av1["bpp"]) >= 2 and all(b > a for a, b in itertools.pairwise(av1["bpp"]))
    assert all(x < y for x, y in zip(av1["bpp_no_headers"], av1["bpp"], strict=True))
    assert "cmc:classic:image" in res["curves"] or any(s["curve"].startswith("cmc:") for s in res["skipped"])
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0 and "0 units computed" in r2.stdout  # resumed: nothing recomputed


def test_failed_units_are_retried_on_resume(tmp_path: Path) -> None:
    curve = rd.make_curves(["jpeg"], ["1"], [], [])[0]
    unit = rd.Unit(str(PARROTS), curve, [1.0], ("psnr",))
    (tmp_path / rd.POINTS_FILE).write_text(json.dumps({"image": PARROTS.name, "curve": "jpeg", "skipped": "boom",
                                                       "error": True}) + "\n")
    assert rd.sweep([unit], tmp_path).ran == 1
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
            "b = baselines.CODECS['av1']\n"
            "for w, h in ((16, 66), (24, 66), (66, 16)):\n"
            "    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))\n"
            "    out = b.decode(b.encode(img, 50))\n"
            "    assert out.size == baselines.padded_size(w, h, *baselines.AV1_PAD), out.size\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_search_skips_settings_at_which_the_encoder_fails() -> None:
    from cmcodec.bench.baselines import SettingFailed

    sizes = {q: 10_000 // q for q in range(1, 64)}  # larger q: smaller file
    probed = []

    def size_of(q: int) -> int:
        probed.append(q)
        if q <= 6:  # as VVenC at QP 1..6 on small pictures
            raise SettingFailed(f"QP {q} failed")
        return sizes[q]

    settings = list(range(63, 0, -1))
    assert find_setting(size_of, settings, 1250) == 8
    assert find_setting(size_of, settings, 10_000 // 7) == 7  # the largest usable file
    assert find_setting(size_of, settings, 5000) is None  # only failing settings would reach it
    assert find_setting(size_of, settings, 10_000 // 40, start=41) == 40
    probed.clear()
    find_setting(size_of, settings, 10_000 // 40, start=40)  # a good prediction: few encodes
    assert len(probed) <= 4, probed


def test_failing_setting_drops_neither_the_unit_nor_the_curve(tmp_path: Path) -> None:
    vvc = baselines.CODECS["vvc"]
    if vvc.available():
        pytest.skip(vvc.available())
    # VVenC refuses QP 1 and 3 on this 96x64 picture (QP 1..6 on kodim01 at 96x64)
    curve = rd.make_curves(["vvc"], ["1"], [], [])[0]
    unit = rd.Unit(str(HOUSE), curve, [0.5, 2.0, 10.0], ("psnr",), effort="fast")
    assert rd.sweep([unit], tmp_path).ran == 1
    rows = rd.load_points(tmp_path)
    assert [r["target_bpp"] for r in rows] == [0.5, 2.0] and not any(r.get("error") for r in rows)
    assert {1, 3} <= set(rows[0]["failed_settings"])
    assert all(r["setting"] not in rows[0]["failed_settings"] for r in rows)
    curves = rd.aggregate(rows, ["psnr"], [0.5, 2.0, 10.0])
    assert curves["vvc"]["target_bpp"] == [0.5, 2.0] and curves["vvc"]["n_images"] == [1, 1]
    assert {1, 3} <= set(curves["vvc"]["failed_settings"])


def test_a_unit_failing_everywhere_is_retried_and_reported(tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    calls = []

    def broken(img, q, options):
        calls.append(q)
        raise baselines.CodecUnavailableError("encoder crashed")

    monkeypatch.setitem(baselines.CODECS, "jpeg", dataclasses.replace(baselines.CODECS["jpeg"], encoder=broken))
    curves = rd.make_curves(["jpeg", "j2k"], ["1"], [], [])
    units = [rd.Unit(str(PARROTS), c, [0.5, 1.0], ("psnr",)) for c in curves]
    rd.sweep(units, tmp_path)
    rows = rd.load_points(tmp_path)
    bad = [r for r in rows if r["curve"] == "jpeg"]
    assert len(bad) == 1 and bad[0]["error"] and bad[0]["attempts"] == 2 and "every setting" in bad[0]["skipped"]
    assert len(calls) == 2 * len(baselines.CODECS["jpeg"].settings_small_to_large())  # each setting once a try
    res = rd.finish(tmp_path, curves, ["psnr"], "j2k", {"targets_bpp": [0.5, 1.0]}, {}, {"psnr": False})
    assert res["failed_units"] == [{"image": PARROTS.name, "curve": "jpeg", "why": bad[0]["skipped"], "attempts": 2}]
    assert res["curves"]["jpeg"]["images_failed"] == 1 and res["curves"]["jpeg"]["bpp"] == []  # listed, not gone
    assert len(res["curves"]["j2k"]["bpp"]) == 2


def _row(image: str, bpp: float, psnr: float, curve: str = "x") -> dict:
    return {"image": image, "curve": curve, "codec": "x", "scale": 1, "mode": "", "target_bpp": bpp, "bpp": bpp,
            "bpp_no_headers": bpp / 2, "encode_s": 0.1, "decode_s": 0.01, "psnr": psnr}


def test_a_curve_where_one_image_misses_a_target_keeps_one_image_set() -> None:
    rows = [_row("a", 0.01, 20.0), _row("a", 0.1, 30.0),  # a covers 0.01 .. 0.1
            _row("b", 0.01, 22.0), _row("b", 0.1, 32.0), _row("b", 0.2, 34.0),  # b covers 0.01 .. 0.2
            _row("c", 0.01, 18.0), _row("c", 0.1, 28.0), _row("c", 0.2, 30.0),  # c likewise
            {"image": "d", "curve": "x", "codec": "x", "scale": 1, "mode": "", "skipped": "no target is reachable"}]
    c = rd.aggregate(rows, ["psnr"], [0.01, 0.1, 0.2])["x"]
    # targets x images: {0.01, 0.1} x {a, b, c} = 6 beats {0.01, 0.1, 0.2} x {b, c} = 6 on images; never a mix
    assert c["image_set"] == ["a", "b", "c"] and c["target_bpp"] == [0.01, 0.1]
    assert c["metrics"]["psnr"] == [pytest.approx(20.0), pytest.approx(30.0)]  # means over a, b and c alike
    assert c["spread"]["psnr"]["min"] == [18.0, 28.0] and c["spread"]["psnr"]["max"] == [22.0, 32.0]
    assert c["targets_outside_set"] == [{"target_bpp": 0.2, "images": 2}]
    assert c["images"] == 4 and c["images_with_points"] == 3 and c["n_images"] == [3, 3]
    more = [*rows, _row("b", 0.4, 36.0), _row("c", 0.4, 32.0)]
    c = rd.aggregate(more, ["psnr"], [0.01, 0.1, 0.2, 0.4])["x"]
    assert c["image_set"] == ["b", "c"] and c["target_bpp"] == [0.01, 0.1, 0.2, 0.4]  # 2 x 4 beats 3 x 2


def test_anchor_settings_are_the_documented_strongest_ones() -> None:
    best = {n: dict(c.efforts["best"].options) for n, c in baselines.CODECS.items()}
    assert best["vvc"] == {"preset": "medium", "qpa": "0"}  # slower: not affordable here (the row says why)
    assert best["hevc"]["preset"] == "slow" and best["hevc"]["tune"] == "psnr"
    assert int(best["av1"]["preset"]) <= 4 and "tune=1" in best["av1"]["svtav1-params"]
    assert best["avif"]["speed"] <= 4 and best["jpeg"] == {"optimize": True}
    assert best["webp"]["method"] == 6 and best["jxl"]["effort"] >= 9 and best["heif"]["preset"] == "slow"
    for c in baselines.CODECS.values():
        assert c.efforts["best"].why and c.efforts["fast"].why
    img = Image.open(PARROTS).convert("RGB")
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=20, optimize=True)
    assert baselines.CODECS["jpeg"].encode(img, 20) == buf.getvalue()  # the options reach the encoder
    hevc = baselines.CODECS["hevc"]
    assert hevc.encode(img, 30) != hevc.encode(img, 30, "fast")


def test_fast_is_said_and_recorded(tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    shutil.copy(HOUSE, src)
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "cmcodec.cli", "rd-curve", str(src), "-o", str(out), "--codecs", "jpeg,webp",
           "--scales", "1", "--profiles", "none", "--metrics", "psnr", "--targets", "0.5,1,2", "--fast"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "--fast" in r.stderr and "weaker anchors" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["fast"] is True and res["settings"]["effort"] == "fast"
    assert res["encoders"]["webp"] == {"effort": "fast", "options": {"method": 4}, "quality": [0, 100],
                                       "small_at": "lo", "why": baselines.CODECS["webp"].efforts["fast"].why}


def test_cmc_budgets_are_the_exact_ones_encode_uses(tmp_path: Path) -> None:
    # 0.06 bpp of 120x120 is exactly 108 bytes; float arithmetic gives 107.99999999999999, which int() cut to 107
    img = tmp_path / "sq.png"
    Image.open(PARROTS).convert("RGB").crop((0, 0, 120, 120)).save(img)
    (curve,) = rd.make_curves([], [], ["classic"], ["pixel"])
    rows = rd.run_unit(rd.Unit(str(img), curve, [0.06], ("psnr",)))
    assert [r["setting"] for r in rows] == [108], rows
    assert 0.7 * 108 <= rows[0]["bytes"] <= 108


def test_ms_ssim_rgb_is_compressais_msssim() -> None:
    """ms_ssim_rgb is pytorch_msssim's MS-SSIM on RGB in [0, 1] (what CompressAI's published ms-ssim figures
    come from), labelled RGB, keyed by that library's version, and a picture too small for its 5 scales is
    one sentence naming the size."""
    import numpy as np
    import torch
    from pytorch_msssim import ms_ssim

    loaded, skipped = metrics.load(["ms_ssim_rgb"])
    assert not skipped
    m = loaded["ms_ssim_rgb"]
    ref = Image.open(PARROTS).convert("RGB").resize((256, 192))
    dist = ref.resize((32, 24)).resize(ref.size)

    def t(im: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    want = float(ms_ssim(t(dist), t(ref), data_range=1.0))
    assert m(dist, ref) == pytest.approx(want, abs=1e-6) and 0.3 < want < 0.99
    assert m.many([dist, ref], [ref, ref]) == pytest.approx([want, 1.0], abs=1e-6)
    d = metrics.describe("ms_ssim_rgb")
    assert d["channel"] == "RGB" and d["library"] == "pytorch_msssim" and d["compressai"] == "ms-ssim-rgb"
    assert metrics.mode_of("ms_ssim_rgb") == "FR" and not metrics.lower_better("ms_ssim_rgb")
    assert "ms_ssim_rgb" in metrics.names("FR")
    with pytest.raises(ValueError, match=r"at least 161 px .* found 96x192"):
        m(dist.resize((96, 192)), ref.resize((96, 192)))


def test_metric_keys_name_the_device_kind_a_gpu_scores_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """rd-curve scores on this process's GPU where there is one: such scores are keyed apart (a GPU's
    arithmetic differs in the last digits); CPU keys are those stored before."""
    assert metrics.metric_key("psnr") == metrics.metric_key("psnr", device="cpu")
    assert metrics.metric_key("psnr", device="cuda:1") == metrics.metric_key("psnr", device="cuda")
    assert metrics.metric_key("psnr", device="cuda") != metrics.metric_key("psnr")
    asked: list[str] = []
    real = metrics.load

    def load(names: list[str], device: str = "cpu", weights_dir: Path | None = None):
        asked.append(device)
        return real(names, device="cpu", weights_dir=weights_dir)

    monkeypatch.setattr(metrics, "load", load)
    monkeypatch.setattr(rd, "_METRICS", {})
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rd.load_metrics(("psnr",), None)
    assert asked == ["cuda"]
