"""rd-curve's plots and report.html: the envelope over scales, the crop region, the page's contents, and the
page in a real headless browser (Chromium through selenium and the system chromedriver)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import HOUSE, PARROTS
from PIL import Image

from cmcodec.bench import report
from cmcodec.bench.report import Point
from cmcodec.core.errors import ConfigError

TARGETS = (0.3, 1.0)


# --- the envelope ------------------------------------------------------------------------------------------

def _pts(scale: int, xy: list[tuple[float, float]], n: int = 4) -> list[Point]:
    return [Point(r, v, n, scale, target=r) for r, v in xy]


def test_envelope_takes_the_best_scale_at_each_target() -> None:
    full = _pts(1, [(0.01, 20.0), (0.02, 25.0), (0.04, 30.0)])
    half = _pts(2, [(0.005, 19.0), (0.01, 22.0), (0.02, 24.0), (0.04, 26.0)])
    env = report.envelope({1: full, 2: half}, lower_better=False)
    assert [(p.rate, p.value, p.scale) for p in env] == [(0.005, 19.0, 2), (0.01, 22.0, 2), (0.02, 25.0, 1),
                                                          (0.04, 30.0, 1)]
    env = report.envelope({1: full, 2: half}, lower_better=True)  # a lower-is-better metric takes the minimum
    assert [(p.value, p.scale) for p in env] == [(19.0, 2), (20.0, 1), (24.0, 2), (26.0, 2)]
    assert report.envelope({1: [], 2: []}, False) == []


def test_envelope_prefers_points_behind_more_images() -> None:
    # at 0.005 only two of four images reach the full-size curve: their easy-image mean must not win
    full = _pts(1, [(0.005, 30.0)], n=2) + _pts(1, [(0.01, 31.0)])
    quarter = _pts(4, [(0.005, 24.0), (0.01, 25.0)])
    env = report.envelope({1: full, 4: quarter}, lower_better=False)
    assert [(p.rate, p.value, p.scale, p.images) for p in env] == [(0.005, 24.0, 4, 4), (0.01, 31.0, 1, 4)]


def test_envelope_on_the_no_header_axis_follows_the_targets() -> None:
    c1 = {"scale": 1, "target_bpp": [0.01, 0.02], "bpp_no_headers": [0.006, 0.016], "n_images": [3, 3],
          "metrics": {"psnr": [21.0, 24.0]}}
    c2 = {"scale": 2, "target_bpp": [0.01, 0.02], "bpp_no_headers": [0.008, 0.018], "n_images": [3, 3],
          "metrics": {"psnr": [22.0, 23.5]}}
    env = report.envelope({1: report.series(c1, "psnr", "bpp_no_headers"),
                           2: report.series(c2, "psnr", "bpp_no_headers")}, False)
    assert [(p.rate, p.scale, p.target) for p in env] == [(0.008, 2, 0.01), (0.016, 1, 0.02)]


def test_series_reads_counts_flags_and_skips_missing_values() -> None:
    c = {"scale": 2, "target_bpp": [0.02, 0.01, 0.04], "bpp": [0.02, 0.01, 0.04],
         "metrics": {"psnr": [24.0, 22.0, None]}, "n_images": [3, 1, 2], "few_images": [False, True, False]}
    assert report.series(c, "psnr") == [Point(0.01, 22.0, 1, 2, True, 0.01), Point(0.02, 24.0, 3, 2, False, 0.02)]


def test_detail_region_finds_the_textured_square() -> None:
    rng = np.random.default_rng(0)
    a = np.full((200, 300, 3), 128, np.uint8)
    a[100:180, 200:280] = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    box = report.detail_region(Image.fromarray(a), side=64, stride=8)
    assert box[0] >= 200 and box[2] <= 280 and box[1] >= 100 and box[3] <= 180
    assert report.detail_region(Image.fromarray(a[:40, :50]), side=64) == (0, 0, 40, 40)  # capped to the image
    assert report.parse_region("10,20,30,40") == (10, 20, 40, 60)
    with pytest.raises(ConfigError, match="X,Y,W,H"):
        report.parse_region("10,20")


# --- one real run ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("imgs")
    shutil.copy(PARROTS, src)
    shutil.copy(HOUSE, src)
    out = tmp_path_factory.mktemp("run") / "rd"
    cmd = [sys.executable, "-m", "cmcodec.cli", "rd-curve", str(src), "-o", str(out), "--codecs", "jpeg,av1",
           "--scales", "1,1/2", "--metrics", "psnr", "--targets", "0.1,0.3,1,3", "--anchor", "av1",
           "--report-image", PARROTS.name, "--report-targets", ",".join(map(str, TARGETS))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"report: {out / 'report.html'}" in r.stdout
    return out


class _Page(HTMLParser):
    """The figures, images and BD-rate rows of report.html."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict] = []
        self.bd_rows: list[str] = []
        self.imgs: list[str] = []
        self._fig: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "figure":
            self._fig = {**a, "img": None, "text": ""}
        elif tag == "a" and self._fig is not None and "download" in a:
            self._fig["stream"] = a["href"]
        elif tag == "img":
            self.imgs.append(a["src"])
            if self._fig is not None:
                self._fig["img"] = a["src"]
        elif tag == "tr" and "data-curve" in a:
            self.bd_rows.append(a["data-curve"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure" and self._fig is not None:
            self.figures.append(self._fig)
            self._fig = None

    def handle_data(self, data: str) -> None:
        if self._fig is not None:
            self._fig["text"] += data + " "


def _page(out: Path) -> _Page:
    p = _Page()
    p.feed((out / "report.html").read_text())
    return p


def test_report_has_the_bd_table_and_one_crop_per_codec_mode_and_target(run: Path) -> None:
    res = json.loads((run / "results.json").read_text())
    page = _page(run)
    assert sorted(page.bd_rows) == sorted(res["bd_rate"])  # one row per curve
    keys = ["jpeg", "av1", "cmc:classic:image", "cmc:classic:pixel"]
    w, h = Image.open(PARROTS).size
    rows = [json.loads(x) for x in (run / "points.jsonl").read_text().splitlines()]
    for t in TARGETS:
        figs = [f for f in page.figures if f["data-target"] == str(t)]
        assert [f["data-key"] for f in figs] == ["original", *keys], t
        for f in figs:
            assert f["img"], f  # every codec and mode reached these targets on this image
            crop = Image.open(run / f["img"])
            assert crop.size == (min(report.CROP_SIDE, w, h),) * 2
            if f["data-key"] == "original":
                continue
            n = int(f["text"].split(" bytes")[0].split()[-1])  # "... 1234 bytes, 0.4 bpp, setting 5 ..."
            assert "psnr" in f["text"]
            assert (run / f["stream"]).stat().st_size == n  # the bytes link to the coded file itself
            if f["data-key"].startswith("cmc:"):
                assert 0 < n <= t * w * h / 8  # a mode never exceeds its budget
            else:  # coded again at the sweep's setting: the same file, at most the target and near it
                setting = int(re.search(r"(?:quality|setting) (\d+)", f["text"]).group(1))
                sweep = [r for r in rows if r["image"] == PARROTS.name and r["curve"] == f["data-curve"]
                         and r.get("setting") == setting]
                assert not sweep or sweep[0]["bytes"] == n, f  # the sweep's file where it coded that setting
                assert abs(math.log(n * 8 / (w * h) / t)) < math.log(report.NEAR_FACTOR) and n * 8 / (w * h) <= t
    for p in page.imgs:
        assert (run / p).is_file(), p


def test_writing_the_report_again_decodes_the_kept_streams(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcodec.bench import rd

    before = {p.name: p.read_bytes() for p in (run / report.FILES_DIR).iterdir()}
    code = rd.code_baseline

    def decode_only(ref, codec, scale, setting, effort="best", data=None):
        if data is None:
            raise AssertionError(f"{codec} at 1/{scale}, setting {setting}: coded again although its stream was kept")
        return code(ref, codec, scale, setting, effort, data)

    monkeypatch.setattr(rd, "code_baseline", decode_only)
    res = json.loads((run / "results.json").read_text())
    report.write_report(run, res, rd.shown_rows(run, res), image=PARROTS, targets=list(TARGETS))
    after = {p.name: p.read_bytes() for p in (run / report.FILES_DIR).iterdir()}
    assert after == before  # the same streams and the same crops


def test_plots_show_envelopes_and_a_detail_figure(run: Path) -> None:
    for stem in ("rd_bpp", "rd_bpp_no_headers", "rd_bpp_scales", "rd_bpp_no_headers_scales"):
        for ext in ("png", "svg"):
            assert (run / f"{stem}.{ext}").stat().st_size > 0, (stem, ext)
    overview = (run / "rd_bpp.svg").read_text()
    assert "JPEG (best scale)" in overview and "cmcodec classic image" in overview
    assert "JPEG @1/2" not in overview  # variants only in the detail figure
    assert "JPEG @1/2" in (run / "rd_bpp_scales.svg").read_text()


# --- in a browser ------------------------------------------------------------------------------------------

def _browser():
    """A headless Chromium driven by selenium through the system chromedriver, or pytest.skip with the reason."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.skip(f"selenium is not installed ({e})")
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no Chromium with chromedriver here (Debian: apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def page_problems(browser, path: Path) -> list[str]:
    """Console errors and images not displayed (zero natural width) of a page opened from the disk."""
    browser.get(path.resolve().as_uri())
    browser.execute_async_script(  # every image has loaded or failed
        "const done = arguments[arguments.length - 1];"
        "Promise.all(Array.from(document.images).map(i => i.complete ? 0 : new Promise(r => "
        "{i.onload = r; i.onerror = r;}))).then(done);")
    imgs = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight]);")
    problems = [f"console {e['level']}: {e['message']}" for e in browser.get_log("browser")
                if e["level"] in ("SEVERE", "ERROR")]
    problems += [f"image not displayed: {src}" for src, w, h in imgs if not (w > 0 and h > 0)]
    if not imgs:
        problems.append("no image on the page")
    return problems


def test_report_loads_in_a_headless_browser(run: Path, tmp_path: Path) -> None:
    browser = _browser()
    try:
        assert page_problems(browser, run / "report.html") == []
        n = len(_page(run).imgs)
        assert n == 4 + len(TARGETS) * (1 + 4)  # plots; per target the original and 2 codecs + 2 modes
        # the check itself fails on a broken link: the same page beside the run, one crop's file missing
        page = (run / "report.html").read_text()
        victim = next(s for s in _page(run).imgs if s.startswith(report.FILES_DIR))
        broken = run / "broken.html"
        broken.write_text(page.replace(f'src="{victim}"', 'src="report_files/missing.png"', 1))
        found = page_problems(browser, broken)
        assert "image not displayed: report_files/missing.png" in found
        assert any(p.startswith("console SEVERE") and "missing.png" in p for p in found), found
        broken.unlink()
    finally:
        browser.quit()


# --- CompressAI's format and published curves ----------------------------------------------------------------

def _compressai_parser():
    """compressai.utils.plot's parse_json_file when compressai is installed (loaded from its file: importing the
    package would build its compiled extensions), else None."""
    import importlib.util

    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "plot" / "__main__.py"
    s = importlib.util.spec_from_file_location("compressai_plot", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod.parse_json_file


def test_compressai_json_and_published_curves_in_plot_table_and_report(tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    Image.open(PARROTS).convert("RGB").resize((288, 192), Image.LANCZOS).save(src / "big.png")  # MS-SSIM: > 160 px
    ref = tmp_path / "published.csv"
    ref.write_text("name,bpp,psnr-rgb\nPaperCodec,0.4,24.0\nPaperCodec,0.8,27.0\nPaperCodec,1.6,30.0\n"
                   "PaperCodec,3.2,33.0\n")
    out = tmp_path / "res"
    r = subprocess.run([sys.executable, "-m", "cmcodec.cli", "rd-curve", str(src), "-o", str(out), "--codecs",
                        "jpeg,webp", "--scales", "1", "--profiles", "none", "--metrics", "psnr,ms_ssim_rgb,piqe",
                        "--targets", "0.5,1,2", "--anchor", "jpeg", "--reference-curves", str(ref),
                        "--report-targets", "1"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["metrics"]["ms_ssim_rgb"]["channel"] == "RGB" and res["metrics"]["psnr"]["unit"] == "dB"
    assert set(res["bd_rate"]["webp"]) == {"psnr", "ms_ssim_rgb"}  # piqe (no-reference) is left out, and said
    assert "no-reference" in res["bd_rate_metrics_left_out"]["piqe"]
    pub = res["bd_rate"]["ref:PaperCodec"]
    assert pub["psnr"]["bd_rate"] is not None and "published" in pub["psnr"]["note"]
    assert pub["ms_ssim_rgb"]["bd_rate"] is None and pub["ms_ssim_rgb"]["note"].startswith("the published curve")
    data = json.loads((out / "compressai" / "webp.json").read_text())
    assert set(data) == {"name", "description", "results"} and "RGB" in data["description"]
    assert {"bpp", "psnr-rgb", "ms-ssim-rgb", "piqe"} <= set(data["results"])
    assert len(data["results"]["bpp"]) == len(data["results"]["psnr-rgb"]) == len(res["curves"]["webp"]["bpp"])
    parse = _compressai_parser()
    if parse is not None:  # CompressAI's own reader (its plot tool's) takes the file
        got = parse(out / "compressai" / "webp.json", "psnr")
        assert got["xs"] == data["results"]["bpp"] and got["ys"] == data["results"]["psnr-rgb"]
        assert len(parse(out / "compressai" / "webp.json", "ms-ssim")["ys"]) == len(got["xs"])
    # the published curve in the plot (legend), the BD table and the report, marked as published, with its source
    assert "PaperCodec (published)" in (out / "rd_bpp.svg").read_text()
    assert "PaperCodec (published)" in (out / "bd_rate.md").read_text()
    page = (out / "report.html").read_text()
    assert "PaperCodec (published)" in page and str(ref) in page and 'data-curve="ref:PaperCodec"' in page
    assert "effort: best" in page and "ms_ssim_rgb (RGB, score)" in page and "psnr (RGB, dB)" in page
    assert '<nav class="toc">' in page and "<details>" in page and page.count('src="rd_bpp_no_headers.png"') == 1
    assert "quality " in page  # a codec's crop names its setting as a quality
    assert "psnr (RGB, dB)" in (out / "points.csv").read_text().splitlines()[0]  # the CSV's columns say it too
    # a reference file that is neither format is one line naming what was expected
    bad = tmp_path / "bad.csv"
    bad.write_text("codec,rate\nx,1\n")
    r = subprocess.run([sys.executable, "-m", "cmcodec.cli", "rd-curve", str(src), "-o", str(out), "--codecs",
                        "jpeg", "--scales", "1", "--profiles", "none", "--metrics", "psnr", "--reference-curves",
                        str(bad)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "expected a CSV with columns name,bpp,METRIC" in r.stderr, r.stderr


def test_published_curves_keep_the_measured_rate_range() -> None:
    """A published curve that runs on to 3.6 bpp does not squeeze curves measured up to 0.1 bpp into a
    corner: the rate axis stays theirs, the quality axis grows to the published points inside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = {"ref:VTM": {"bpp": [0.048, 0.112, 0.246, 3.63], "metrics": {"psnr": [26.1, 28.5, 31.2, 46.6]}}}
    fig, ax = plt.subplots()
    ax.plot([0.0005, 0.01, 0.1], [16.0, 21.0, 26.5])
    report._draw_references(ax, refs, "psnr", "bpp")
    x0, x1 = ax.get_xlim()
    assert ax.get_xscale() == "log" and 0.1 <= x1 < 0.2 and x0 < 0.0005
    y0, y1 = ax.get_ylim()
    assert y1 >= 28.5 and y1 < 35 and y0 < 16  # the point at 0.112 bpp is shown, the one at 46.6 dB is not
    fig2, ax2 = plt.subplots()  # nothing measured on the panel: the published curve sets the range
    report._draw_references(ax2, refs, "psnr", "bpp")
    assert ax2.get_xlim()[1] > 3.6
    plt.close(fig)
    plt.close(fig2)
