"""cmcodec evaluate: pairing by name, every mode through the real codec with tiny models, resume, tables."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HOUSE, PARROTS
from PIL import Image

from cmcodec.bench import evaluate as ev
from cmcodec.core.errors import ConfigError


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture()
def gt(tmp_path: Path) -> Path:
    d = tmp_path / "gt"
    d.mkdir()
    shutil.copy(PARROTS, d / "NSI_parrots.png")
    shutil.copy(HOUSE, d / "SCI_house.png")
    Image.open(PARROTS).transpose(Image.FLIP_LEFT_RIGHT).save(d / "AIGI_flipped.png")
    return d


def test_pairing_is_by_name_not_listing_order(tmp_path: Path) -> None:
    gt = [tmp_path / "b.png", tmp_path / "a.png", tmp_path / "c.png"]
    res = [tmp_path / "r" / "c.png", tmp_path / "r" / "a.png", tmp_path / "r" / "b.png"]
    assert [(g.name, r.name) for g, r in ev.pair_by_name(gt, res, "x")] == [("a.png", "a.png"), ("b.png", "b.png"),
                                                                           ("c.png", "c.png")]
    with pytest.raises(ConfigError, match=r"missing 1 \(c\) and extra 1 \(d\)"):
        ev.pair_by_name(gt, [*res[1:], tmp_path / "d.png"], "x")


TOPIQ_FR, TOPIQ_NR = ev.Axis("topiq_fr", False, 0, 1, True), ev.Axis("topiq_nr", False, 0, 1, True)


def test_overall_and_categories() -> None:
    per_mode = {"text": [{"name": "NSI_a", "fr": 0.4, "nr": 0.6, "bpp": 0.001},
                         {"name": "SCI_b", "fr": 0.2, "nr": 0.2, "bpp": 0.003}],
                "full": [{"name": "NSI_a", "fr": 0.8, "nr": 0.5, "bpp": 0.02},
                         {"name": "SCI_b", "fr": 0.6, "nr": 0.3, "bpp": 0.02}]}
    s = ev.summarize(per_mode, TOPIQ_FR, TOPIQ_NR)
    assert s["modes"]["text"]["fr"] == pytest.approx(0.3) and s["modes"]["text"]["bpp"] == pytest.approx(0.002)
    assert s["overall_rule"] == "cmc-bench"  # CMC-Bench's own pair: its formula on the raw scores
    assert s["overall"] == pytest.approx(2 / 3 * (0.3 + 0.7) / 2 + 1 / 3 * (0.4 + 0.4) / 2)
    assert set(s["categories"]) == {"NSI", "SCI"}
    assert s["categories"]["NSI"]["modes"]["text"]["fr"] == pytest.approx(0.4)
    flipped = ev.summarize(per_mode, TOPIQ_FR, ev.Axis("topiq_nr", True, 0, 1))
    assert flipped["overall"] == pytest.approx(2 / 3 * 0.5 - 1 / 3 * 0.4)


def test_evaluate_all_modes_with_tiny_models_then_resume(gt: Path, tmp_path: Path, tiny_sd: Path) -> None:
    caps = tmp_path / "caps.csv"
    caps.write_text(",name,text\n0,NSI_parrots.png,Two parrots.\n1,SCI_house.png,A red house.\n"
                    "2,AIGI_flipped.png,Two parrots facing left.\n", encoding="utf-8")
    out = tmp_path / "runs"
    args = ["evaluate", str(gt), "-o", str(out), "--captions", str(caps), "--profile", "sd-turbo",
            "--model-path", f"sd-turbo={tiny_sd}", "--fr", "psnr", "--nr", "piqe", "--device", "cpu",
            "--modes", ",".join(ev.MODES)]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert "skipping sd-turbo/noise" in r.stderr  # a mode the profile does not decode is left out, said so
    run_dir = out / "caps__sd-turbo"
    for m in ev.CMC_BENCH_MODES:
        names = sorted(p.name for p in (run_dir / m).iterdir())
        assert names == sorted(f"{s}{e}" for s in ("NSI_parrots", "SCI_house", "AIGI_flipped") for e in (".cmc", ".png"))
    scores = json.loads((run_dir / "scores.json").read_text())
    assert set(scores["modes"]) == set(ev.CMC_BENCH_MODES) and set(scores["categories"]) == {"NSI", "SCI", "AIGI"}
    sizes = [(run_dir / "text" / f"{s}.cmc").stat().st_size * 8 / (w * h)
             for s, (w, h) in (("NSI_parrots", (192, 128)), ("SCI_house", (96, 64)), ("AIGI_flipped", (192, 128)))]
    assert scores["modes"]["text"]["bpp"] == pytest.approx(sum(sizes) / 3)  # real file sizes
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["runs"][0]["run"] == "caps__sd-turbo" and "text_fr" in board["runs"][0]
    assert (out / "leaderboard.md").read_text().count("|") > 10 and (out / "leaderboard.csv").exists()
    assert (run_dir / "radar.png").stat().st_size > 0
    assert (out / "captions" / "caps.csv").exists()
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("*/*") if p.suffix in (".cmc", ".png")}
    lines = {m: (run_dir / f"{m}.scores.jsonl").read_text() for m in ev.CMC_BENCH_MODES}
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing re-encoded or re-decoded
    assert {m: (run_dir / f"{m}.scores.jsonl").read_text() for m in ev.CMC_BENCH_MODES} == lines  # nothing re-scored


def test_evaluate_with_tiny_captioner(gt: Path, tmp_path: Path, tiny_sd: Path, tiny_blip: Path) -> None:
    out = tmp_path / "runs"
    r = run("evaluate", str(gt), "-o", str(out), "--i2t", "tiny", "--i2t-path", f"tiny={tiny_blip}", "--modes", "text",
            "--model-path", str(tiny_sd), "--fr", "psnr", "--nr", "piqe", "--words", "5", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    caps = ev.read_captions(out / "captions" / "tiny.csv")
    assert set(caps) == {"NSI_parrots", "SCI_house", "AIGI_flipped"}


def test_results_folder_scoring_and_mismatch_errors(gt: Path, tmp_path: Path) -> None:
    res = tmp_path / "cmcbench_run"
    for m in ("text", "image"):
        (res / m).mkdir(parents=True)
        for p in gt.iterdir():
            Image.open(p).resize((64, 48)).save(res / m / (p.stem + ".png"))
    out = tmp_path / "scored"
    r = run("evaluate", str(gt), "-o", str(out), "--results", str(res), "--modes", "text,image", "--fr", "psnr",
            "--nr", "piqe")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "cmcbench_run" / "scores.json").read_text())
    assert s["modes"]["text"]["bpp"] is None and s["modes"]["text"]["images"] == 3
    (res / "image" / "SCI_house.png").rename(res / "image" / "SCI_home.png")
    r = run("evaluate", str(gt), "-o", str(tmp_path / "s2"), "--results", str(res), "--modes", "text,image",
            "--fr", "psnr", "--nr", "piqe")
    assert r.returncode != 0
    errors = [x for x in r.stderr.splitlines() if x.startswith("cmcodec: error")]
    assert len(errors) == 1 and "missing 1 (SCI_house) and extra 1 (SCI_home)" in errors[0]
    assert "score" not in r.stderr  # found before any scoring started


def test_missing_metric_weights_is_a_clear_error(gt: Path, tmp_path: Path) -> None:
    r = run("evaluate", str(gt), "-o", str(tmp_path / "o"), "--results", str(gt), "--modes", "text", "--offline")
    assert r.returncode != 0
    assert "metric topiq_fr" in r.stderr and "--metric-weights" in r.stderr


def test_category_table_overrides_prefixes() -> None:
    per_mode = {"text": [{"name": "img1", "fr": 0.1, "nr": 0.2, "bpp": 0.001},
                         {"name": "img2", "fr": 0.3, "nr": 0.4, "bpp": 0.001}]}
    s = ev.summarize(per_mode, TOPIQ_FR, TOPIQ_NR, categories={"img1": "faces", "img2": "scenes"})
    assert set(s["categories"]) == {"faces", "scenes"}
    assert ev.category("NSI_x") == "NSI" and ev.category("photo") == "all"


def test_local_metric_weights_are_passed_to_pyiqa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyiqa

    from cmcodec.bench import metrics

    (tmp_path / "topiq-fr.pth").write_bytes(b"weights")
    seen = {}

    class Fake:
        lower_better = False

    def create_metric(name, device="cpu", **kw):
        seen[name] = kw
        return Fake()

    monkeypatch.setattr(pyiqa, "create_metric", create_metric)
    loaded, skipped = metrics.load(["topiq_fr", "psnr"], weights_dir=tmp_path)
    assert not skipped and seen["topiq_fr"] == {"pretrained_model_path": str(tmp_path / "topiq-fr.pth")}
    assert seen["psnr"] == {} and loaded["topiq_fr"].mode == "FR"


def test_overall_normalises_other_pairs_by_the_stated_rule() -> None:
    psnr, piqe = ev.Axis.of("psnr", False), ev.Axis.of("piqe", True)
    assert (psnr.lo, psnr.hi, psnr.approx, psnr.unit) == (0, 40, True, "dB")
    assert (piqe.lo, piqe.hi, piqe.unit) == (0, 100, "0..100, lower better")
    per_mode = {"text": [{"name": "a", "fr": 20.0, "nr": 60.0, "bpp": 0.001}],
                "full": [{"name": "a", "fr": 48.0, "nr": 20.0, "bpp": 0.02}]}
    s = ev.summarize(per_mode, psnr, piqe)
    assert s["overall_rule"] == "normalised" and "pyiqa's stated range" in s["overall_text"]
    assert s["modes"]["text"]["fr_norm"] == pytest.approx(0.5) and s["modes"]["full"]["fr_norm"] == 1.0  # clipped
    assert s["modes"]["text"]["nr_norm"] == pytest.approx(0.4)  # lower better: 1 - 60/100
    assert s["overall"] == pytest.approx(2 / 3 * (0.5 + 1.0) / 2 + 1 / 3 * (0.4 + 0.8) / 2)
    nameless = ev.Axis("my_metric", False)  # no stated range: no Overall, and the reports say why
    s = ev.summarize(per_mode, nameless, piqe)
    assert s["overall_rule"] == "none" and math.isnan(s["overall"]) and "my_metric has no stated score range" in \
        s["overall_text"]


def test_radar_axes_are_normalised_and_labelled_with_units(tmp_path: Path) -> None:
    per_mode = {"text": [{"name": "a", "fr": 20.0, "nr": 60.0, "bpp": 0.001}],
                "pixel": [{"name": "a", "fr": 30.0, "nr": 30.0, "bpp": 0.002}]}
    s = ev.summarize(per_mode, ev.Axis.of("psnr", False), ev.Axis.of("piqe", True))
    labels, radii = ev.radar_axes(s)
    assert labels == ["text FR psnr\n20 dB", "pixel FR psnr\n30 dB", "text NR piqe\n60 0..100, lower better",
                      "pixel NR piqe\n30 0..100, lower better"]
    assert radii == pytest.approx([0.5, 0.75, 0.4, 0.7])
    ev.radar(s, "run", tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0
    ev.leaderboard({"run": s}, tmp_path, "psnr", "piqe")
    md = (tmp_path / "leaderboard.md").read_text()
    assert "text FR (dB)" in md and "text NR (0..100, lower better)" in md and "pyiqa's stated range" in md


def test_reports_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    # an evaluate run killed while it writes its reports leaves the earlier ones whole, and no temp files
    import matplotlib.figure

    per_mode = {"text": [{"name": "a", "fr": 20.0, "nr": 60.0, "bpp": 0.001}]}
    s = ev.summarize(per_mode, ev.Axis.of("psnr", False), ev.Axis.of("piqe", True))
    ev.write_reports({"run": s}, tmp_path, "psnr", "piqe")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["leaderboard.csv", "leaderboard.json", "leaderboard.md", "run/radar.png", "run/scores.json"]
    before = {f: (tmp_path / f).read_bytes() for f in files}

    def dies_halfway(self, fname, **kw):
        Path(fname).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        ev.write_reports({"run": {**s, "overall": 0.5}}, tmp_path, "psnr", "piqe")
    assert (tmp_path / "run/radar.png").read_bytes() == before["run/radar.png"]  # not the half-written one
    assert json.loads((tmp_path / "run/scores.json").read_text())["overall"] == 0.5  # written whole before
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == files


def _stamps(d: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in d.glob("*/*") if p.suffix in (".cmc", ".png")}


def test_evaluate_reruns_reuse_only_what_the_same_settings_made(gt: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    caps = tmp_path / "caps.csv"
    caps.write_text(",name,text\n0,NSI_parrots.png,a\n1,SCI_house.png,b\n2,AIGI_flipped.png,c\n", encoding="utf-8")
    args = ["evaluate", str(gt), "-o", str(out), "--profile", "classic", "--modes", "pixel,image", "--captions",
            str(caps), "--nr", "piqe"]
    r = run(*args, "--fr", "psnr")
    assert r.returncode == 0, r.stderr
    run_dir = out / "caps__classic"
    stamps = _stamps(run_dir)
    scores = {m: (run_dir / f"{m}.scores.jsonl").read_text() for m in ("pixel", "image")}
    r = run(*args, "--fr", "psnr")  # the same settings: everything reused
    assert r.returncode == 0 and "redone" not in r.stderr, r.stderr
    assert _stamps(run_dir) == stamps and {m: (run_dir / f"{m}.scores.jsonl").read_text() for m in scores} == scores
    # another metric: the files are kept, every score is computed again; a stored file of another mode (or
    # changed since it was written) is made again, and said
    (run_dir / "image" / "SCI_house.cmc").write_bytes((run_dir / "pixel" / "SCI_house.cmc").read_bytes())
    r = run(*args, "--fr", "ssim")
    assert r.returncode == 0, r.stderr
    assert "image/SCI_house: redone" in r.stderr and r.stderr.count("redone") == 1
    assert {p: v for p, v in _stamps(run_dir).items() if "image/SCI_house" not in str(p)} == \
        {p: v for p, v in stamps.items() if "image/SCI_house" not in str(p)}
    s = json.loads((run_dir / "scores.json").read_text())
    assert s["fr"] == "ssim" and 0 < s["modes"]["pixel"]["fr"] <= 1  # ssim values, not the psnr ones in dB
    from cmcodec.core.bitstream import read_header

    assert read_header((run_dir / "image" / "SCI_house.cmc").read_bytes()).mode == "image"
    stamps = _stamps(run_dir)
    r = run(*args, "--fr", "ssim", "--force")
    assert r.returncode == 0 and all(v != stamps[p] for p, v in _stamps(run_dir).items()), r.stderr


def test_evaluate_redecodes_when_the_profile_model_changes(gt: Path, tmp_path: Path, tiny_sd: Path) -> None:
    other = tmp_path / "other-sd"
    shutil.copytree(tiny_sd, other)
    caps = tmp_path / "caps.csv"
    caps.write_text(",name,text\n0,NSI_parrots.png,Two parrots.\n1,SCI_house.png,A red house.\n"
                    "2,AIGI_flipped.png,Two parrots facing left.\n", encoding="utf-8")
    out = tmp_path / "runs"
    args = ["evaluate", str(gt), "-o", str(out), "--captions", str(caps), "--profile", "sd-turbo", "--modes", "text",
            "--fr", "psnr", "--nr", "piqe", "--device", "cpu"]
    assert run(*args, "--model-path", f"sd-turbo={tiny_sd}").returncode == 0
    stamps = _stamps(out / "caps__sd-turbo")
    r = run(*args, "--model-path", f"sd-turbo={other}")
    assert r.returncode == 0, r.stderr
    now = _stamps(out / "caps__sd-turbo")
    cmc = [p for p in stamps if p.suffix == ".cmc"]
    assert all(now[p] == stamps[p] for p in cmc)  # the files' bytes do not depend on the model
    assert all(now[p] != stamps[p] for p in stamps if p.suffix == ".png")  # decoded by the other model


def test_evaluate_skips_the_modes_a_profile_does_not_decode(gt: Path, tmp_path: Path) -> None:
    caps = tmp_path / "caps.csv"
    caps.write_text(",name,text\n0,NSI_parrots.png,a\n1,SCI_house.png,b\n2,AIGI_flipped.png,c\n", encoding="utf-8")
    r = run("evaluate", str(gt), "-o", str(tmp_path / "o"), "--captions", str(caps), "--profiles",
            "classic,sd15-tile", "--modes", "text,pixel", "--fr", "psnr", "--nr", "piqe")
    assert r.returncode == 0, r.stderr
    assert "skipping classic/text: the classic profile decodes pixel, image, full only" in r.stderr
    assert "skipping caps__sd15-tile: the sd15-tile profile decodes none of the modes asked for" in r.stderr
    board = json.loads((tmp_path / "o" / "leaderboard.json").read_text())
    assert [x["run"] for x in board["runs"]] == ["caps__classic"]

    class Bar:
        def update(self, n: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

    with pytest.raises(ConfigError, match=r"nothing to evaluate: none of the profiles \(sd15-tile\) decodes any"):
        ev.run_combinations(sorted(gt.iterdir()), tmp_path / "o2", ["text"], None, None, ["caps"], ["sd15-tile"],
                            {"NSI_parrots": "a", "SCI_house": "b", "AIGI_flipped": "c"}, {}, {}, 20, "cpu",
                            lambda d, n: Bar(), lambda m: None)
