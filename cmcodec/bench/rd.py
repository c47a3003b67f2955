"""Rate-distortion sweeps: conventional codecs and cmcodec's own modes on one set of images.

A *curve* is a codec at a scale (``jpeg``, ``av1@1/4``: code at a quarter of each side, upscale back with
Lanczos) or a cmcodec profile and mode (``cmc:classic:image``). For each image and curve, each target bpp
is searched for over the codec's integer setting (``bench.baselines.find_setting``: started from a
predicted setting, each setting of an (image, scale) coded once; a setting at which the encoder fails is
skipped, not fatal), decoded, and scored with pyiqa metrics against the original, paired by file name.
Rates are whole files (``bpp``) and, second, without the fixed headers that ``core.refcodecs`` documents
per codec (``bpp_no_headers``).

Points of a curve (``aggregate``): each image's own points form its curve; at each target the curve
covers (from its smallest to its largest file, 10% beyond either end), its metrics are interpolated
linearly in log bpp; a curve's point is the mean over the images that cover that target, with their
number (``n_images``). A point behind fewer than half of the curve's images is kept and marked
(``few_images``): such means are over the images that happen to reach that rate.

Every finished (image, curve) unit is appended to ``points.jsonl`` in the output folder, so a rerun skips
it (resume); a unit that fails is retried once at once and, failing again, recorded with its error (and
rerun by the next run). ``jobs`` > 1 runs units in worker processes. ``run`` is the whole command: sweep,
then ``finish`` writes the per-image CSV, the aggregated JSON and the BD-rate table (``report`` draws the
plots and writes report.html).
"""

from __future__ import annotations

import json
import math
import platform
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..core import refcodecs
from ..core.errors import CmcodecError, ConfigError
from ..media.fileio import write_csv
from . import baselines
from .baselines import SCALES
from .metrics import mean

POINTS_FILE = "points.jsonl"
RETRIES = 1  # a failed unit is run once more at once (a transient failure: a killed encoder, a full disk)
FEW_IMAGES = 0.5  # a point behind fewer than this share of a curve's images is marked few_images


@dataclass(frozen=True)
class Curve:
    """One line of the plot: a conventional codec at a scale, or a cmcodec profile and mode."""

    name: str
    kind: str  # "baseline" or "cmc"
    codec: str  # codec name (core.refcodecs), or profile name
    scale: int = 1  # 1, 2, 4, 8 (side divisor), codecs only
    mode: str = ""  # cmc only

    @property
    def label(self) -> str:
        """Legend text."""
        if self.kind == "cmc":
            return f"cmcodec {self.codec} {self.mode}"
        base = refcodecs.CODECS[self.codec].label
        return base if self.scale == 1 else f"{base} @1/{self.scale}"


def make_curves(codecs: Iterable[str], scales: Iterable[str], profiles: Iterable[str],
                modes: Iterable[str]) -> list[Curve]:
    """Curves for codec x scale and profile x mode, in that order."""
    out = []
    for c in codecs:
        refcodecs.get(c)
        for s in scales:
            if s not in SCALES:
                raise ConfigError(f"unknown scale {s!r}: expected one of {', '.join(SCALES)}")
            k = SCALES[s]
            out.append(Curve(c if k == 1 else f"{c}@1/{k}", "baseline", c, k))
    for p in profiles:
        for m in modes:
            out.append(Curve(f"cmc:{p}:{m}", "cmc", p, 1, m))
    return out


def targets_from_range(lo: float, hi: float, n: int) -> list[float]:
    """n target bpp values spaced evenly on a log axis from lo to hi."""
    if not 0 < lo < hi or n < 1:
        raise ConfigError(f"bpp range must be 0 < lo < hi with at least one point; found {lo}:{hi}, {n} points")
    if n == 1:
        return [lo]
    return [round(lo * (hi / lo) ** (i / (n - 1)), 6) for i in range(n)]


find_setting = baselines.find_setting


# --- one unit of work: an image on one curve ---------------------------------------------------------------

_METRICS: dict[str, Any] = {}


def load_metrics(names: tuple[str, ...], weights_dir: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """(loaded metrics, reasons for the skipped ones), loaded once per process."""
    key = (names, weights_dir)
    if key not in _METRICS:
        from . import metrics

        _METRICS[key] = metrics.load(list(names), weights_dir=Path(weights_dir) if weights_dir else None)
    return _METRICS[key]


def _metrics(names: tuple[str, ...], weights_dir: str | None) -> dict[str, Any]:
    """The loaded metrics of load_metrics."""
    return load_metrics(names, weights_dir)[0]


def _score(loaded: dict[str, Any], out: Image.Image, ref: Image.Image) -> dict[str, float]:
    """Every loaded metric on one decoded image."""
    return {n: round(m(out, ref), 6) for n, m in loaded.items()}


@dataclass
class Unit:
    """Work order: one image on one curve at the given targets."""

    image: str
    curve: Curve
    targets: list[float]
    metrics: tuple[str, ...]
    weights_dir: str | None = None
    captions: dict[str, str] = field(default_factory=dict)
    model_paths: dict[str, str] = field(default_factory=dict)  # profile name (or '*') -> local model folder
    effort: str = "best"  # the codec rows' effort level ("fast" for rd-curve --fast)
    hints: dict[float, int] = field(default_factory=dict)  # target -> setting other images of the curve chose
    dtype: str | None = None  # model precision of the cmcodec curves (None: each model's default)


def run_unit(u: Unit) -> list[dict]:
    """Rows of one unit (one per reached target, or one row with 'skipped' saying why none)."""
    from ..media.images import load_image

    path = Path(u.image)
    ref = load_image(path)
    w, h = ref.size
    loaded = _metrics(u.metrics, u.weights_dir)
    base = {"image": path.name, "curve": u.curve.name, "codec": u.curve.codec, "scale": u.curve.scale,
            "mode": u.curve.mode, "width": w, "height": h}
    try:
        run = _baseline_rows if u.curve.kind == "baseline" else _cmc_rows
        rows = run(u, path, ref, loaded)
    except CmcodecError as e:  # an error is retried; "no target is reachable" is not
        return [{**base, "skipped": str(e), "error": True}]
    if not rows:
        return [{**base, "skipped": "no target is reachable"}]
    return [{**base, **r} for r in rows]


def _predict(pic: baselines.CodedPicture, settings: list[int], target: float) -> int | None:
    """A setting predicted for target bytes from the sizes already coded: log size interpolated linearly
    between the nearest coded settings on either side (extrapolated from the two nearest on one side)."""
    known = sorted((settings.index(q), math.log(max(1, len(e.data)))) for q, e in pic.done.items() if q in settings)
    if len(known) < 2:
        return None
    lt = math.log(max(1.0, target))
    below = [k for k in known if k[1] <= lt]
    above = [k for k in known if k[1] > lt]
    a, b = (below[-1], above[0]) if below and above else (known[-2], known[-1]) if below else (known[0], known[1])
    if b[1] == a[1]:
        return None
    i = round(a[0] + (lt - a[1]) * (b[0] - a[0]) / (b[1] - a[1]))
    return settings[max(0, min(len(settings) - 1, i))]


def _baseline_rows(u: Unit, path: Path, ref: Image.Image, loaded: dict[str, Any]) -> list[dict]:
    """The setting closest to each target on a conventional codec at the curve's scale."""
    b = refcodecs.get(u.curve.codec)
    why = b.available()
    if why:
        raise CmcodecError(f"{b.name} unavailable: {why}")
    w, h = ref.size
    small = baselines.downscale(ref, u.curve.scale)
    pic = baselines.CodedPicture(b, small, u.effort)
    settings = b.settings_small_to_large()
    rows = []
    done: set[int] = set()
    for t in u.targets:
        start = _predict(pic, settings, t * w * h / 8) or u.hints.get(t)
        q = baselines.find_setting(pic.size, settings, t * w * h / 8, start)
        if q is None or q in done:
            continue
        done.add(q)
        enc = pic.done[q]
        t1 = time.perf_counter()
        out = b.decode(enc.data)
        t2 = time.perf_counter()
        out = out.crop((0, 0, *small.size)) if out.size != small.size else out
        if out.size != (w, h):
            out = out.resize((w, h), Image.LANCZOS)
        hdr = b.header_bytes(enc.data)
        n = len(enc.data)
        rows.append({"target_bpp": t, "setting": q, "bytes": n, "header_bytes": hdr, "bpp": n * 8 / (w * h),
                     "bpp_no_headers": (n - hdr) * 8 / (w * h), "encode_s": round(enc.seconds, 4),
                     "decode_s": round(t2 - t1, 4), **_score(loaded, out, ref)})
    if len(pic.failed) == len(settings):
        raise CmcodecError(f"{b.name} failed at every setting on {path.name} at 1/{u.curve.scale}: "
                           f"{next(iter(pic.failed.values()))}")
    if pic.failed:  # reported with the unit's rows (and in results.json), never silently
        for r in rows:
            r["failed_settings"] = sorted(pic.failed)
        if not rows:
            return [{"skipped": "no target is reachable", "failed_settings": sorted(pic.failed)}]
    total = round(sum(e.seconds for e in pic.done.values()), 3)
    for r in rows:  # the search's cost: every encode of the unit, chosen or not
        r["encodes"], r["unit_encode_s"] = len(pic.done) + len(pic.failed), total
    return rows


def _cmc_rows(u: Unit, path: Path, ref: Image.Image, loaded: dict[str, Any]) -> list[dict]:
    """cmcodec's own rate control per target (whole files never exceed the target)."""
    from .. import codec, distributed
    from ..core.bitstream import read_header
    from ..core.errors import BudgetError

    w, h = ref.size
    caption = u.captions.get(path.name) or u.captions.get(path.stem)
    rows = []
    seen: set[int] = set()
    for t in u.targets:
        budget = codec.budget_bytes(w, h, t)  # exact, as `encode --bpp` computes it (floats round 29 to 28.999)
        if budget < 1:
            continue  # below one byte no file exists
        t0 = time.perf_counter()
        try:
            data = codec.encode(ref, mode=u.curve.mode, profile=u.curve.codec, max_bytes=budget, caption=caption,
                                options=codec.EncodeOptions(dtype=u.dtype))
        except BudgetError:
            continue
        t1 = time.perf_counter()
        if len(data) in seen:
            continue
        seen.add(len(data))
        out = codec.decode(data, codec.DecodeOptions(
            model_path=u.model_paths.get(u.curve.codec, u.model_paths.get("*")), device=distributed.device(None),
            dtype=u.dtype))
        t2 = time.perf_counter()
        hdr = read_header(data).overhead_bytes
        rows.append({"target_bpp": t, "setting": budget, "bytes": len(data), "header_bytes": hdr,
                     "bpp": len(data) * 8 / (w * h), "bpp_no_headers": (len(data) - hdr) * 8 / (w * h),
                     "encode_s": round(t1 - t0, 4), "decode_s": round(t2 - t1, 4), **_score(loaded, out, ref)})
    return rows


# --- the sweep ---------------------------------------------------------------------------------------------

def unit_key(image: str, curve: str) -> str:
    """Resume key of a unit."""
    return f"{image}\t{curve}"


def done_units(out: Path) -> set[str]:
    """Keys of the units already in points.jsonl (units that ended in an error are not done)."""
    return {unit_key(r["image"], r["curve"]) for r in load_points(out) if not r.get("error")}


def _drop_errors(out: Path) -> None:
    """Remove the rows of failed units from points.jsonl (atomically) so that they run again."""
    from ..media.fileio import write_bytes

    rows = load_points(out)
    if any(r.get("error") for r in rows):
        write_bytes(out / POINTS_FILE, "".join(json.dumps(r) + "\n" for r in rows if not r.get("error")).encode(),
                    force=True)


class _Hints:
    """Per curve and target, the settings the finished images chose; a new image's search starts at their
    median (fed by the rows on disk and by each unit as it finishes)."""

    def __init__(self, rows: Iterable[dict]) -> None:
        self.by: dict[str, dict[float, list[int]]] = defaultdict(lambda: defaultdict(list))
        self.add(rows)

    def add(self, rows: Iterable[dict]) -> None:
        for r in rows:
            if "setting" in r and not str(r["curve"]).startswith("cmc:"):
                self.by[r["curve"]][r["target_bpp"]].append(r["setting"])

    def of(self, curve: str) -> dict[float, int]:
        return {t: sorted(v)[len(v) // 2] for t, v in self.by.get(curve, {}).items()}


def _run_with_retry(u: Unit) -> list[dict]:
    """run_unit, once more at once if it failed; the rows say how many attempts it took."""
    attempt = 1
    rows = run_unit(u)
    while attempt <= RETRIES and any(r.get("error") for r in rows):
        attempt += 1
        rows = run_unit(u)
    for r in rows:
        r["attempts"] = attempt
    return rows


def sweep(units: list[Unit], out: Path, jobs: int = 1, progress: Callable[[int, int], None] | None = None) -> int:
    """Run the units not finished yet, appending their rows to points.jsonl; returns how many ran."""
    from ..distributed import barrier, is_main, merge_lines, rank_path, shard
    from ..media.fileio import append_jsonl

    out.mkdir(parents=True, exist_ok=True)
    if is_main():
        merge_lines(out / POINTS_FILE)  # rows an interrupted multi-process run left behind
        _drop_errors(out)
    barrier()
    done = done_units(out)
    hints = _Hints(load_points(out))
    todo = shard([u for u in units if unit_key(Path(u.image).name, u.curve.name) not in done])
    path = rank_path(out / POINTS_FILE)

    def hinted(u: Unit) -> Unit:
        if not u.hints:
            u.hints = hints.of(u.curve.name)
        return u

    def write(rows: list[dict]) -> None:
        hints.add(rows)
        append_jsonl(path, rows)  # one unit per write: a crash loses at most the unit in flight

    if jobs <= 1:
        for i, u in enumerate(todo):
            write(_run_with_retry(hinted(u)))
            if progress:
                progress(i + 1, len(todo))
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
            queue, running, finished = list(todo), set(), 0
            while queue or running:  # a unit is handed out when a worker frees: it starts from the latest hints
                while queue and len(running) < 2 * jobs:
                    running.add(pool.submit(_run_with_retry, hinted(queue.pop(0))))
                ready, running = wait(running, return_when=FIRST_COMPLETED)
                for f in ready:
                    write(f.result())
                    finished += 1
                    if progress:
                        progress(finished, len(todo))
    barrier()
    if is_main():
        merge_lines(out / POINTS_FILE)
    return len(todo)


def _worker_init() -> None:
    """One compute thread per worker process: N workers on N cores, not N x N threads fighting."""
    import os

    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def load_points(out: Path) -> list[dict]:
    """Every row of points.jsonl."""
    from ..media.fileio import read_jsonl

    return read_jsonl(out / POINTS_FILE)


# --- aggregation -------------------------------------------------------------------------------------------

def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """ys at x, linear between the neighbouring xs (sorted), the end value beyond either end."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    k = next(i for i in range(1, len(xs)) if xs[i] >= x)
    f = (x - xs[k - 1]) / (xs[k] - xs[k - 1]) if xs[k] > xs[k - 1] else 0.0
    return ys[k - 1] + f * (ys[k] - ys[k - 1])


def image_curve_at(rows: list[dict], target: float, keys: list[str]) -> dict[str, float] | None:
    """One image's curve (its rows on one curve) at a target bpp: each key interpolated linearly in log bpp,
    the end value held up to 10% beyond either end (the share of bits without headers likewise, in log);
    None when the target lies further outside its points."""
    pts = sorted(rows, key=lambda r: r["bpp"])
    lo, hi = pts[0]["bpp"], pts[-1]["bpp"]
    if not lo / baselines.REACH <= target <= hi * baselines.REACH:
        return None
    lx = [math.log(r["bpp"]) for r in pts]
    x = math.log(target)
    out = {k: _interp(x, lx, [r[k] for r in pts]) for k in keys if all(k in r for r in pts)}
    if all(r.get("bpp_no_headers", 0) > 0 for r in pts):  # the share without headers, in log (held beyond the ends)
        out["bpp_no_headers"] = target * math.exp(_interp(x, lx, [math.log(r["bpp_no_headers"] / r["bpp"])
                                                                  for r in pts]))
    return out


def aggregate(rows: list[dict], metric_names: list[str], targets: list[float] | None = None) -> dict[str, dict]:
    """Per curve, the mean of its images' own curves at each target some image covers (see the module
    docstring), with the number of images behind each point; no curve loses a point another image supports.

    targets: the run's targets (default: every target_bpp in the rows). Curves whose every image failed or
    reached nothing are kept with no points and their counts, so a reader sees them.
    """
    per: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    images: dict[str, set[str]] = defaultdict(set)
    failed: dict[str, set[str]] = defaultdict(set)
    first: dict[str, dict] = {}
    for r in rows:
        c = r["curve"]
        first.setdefault(c, r)
        images[c].add(r["image"])
        if r.get("error"):
            failed[c].add(r["image"])
        elif "skipped" not in r:
            per[c][r["image"]].append(r)
    ts = sorted(set(targets) if targets else {r["target_bpp"] for r in rows if "target_bpp" in r})
    keys = [*metric_names, "encode_s", "decode_s"]
    curves = {}
    for name in images:
        n_img = len(images[name])
        pts: list[tuple[float, list[dict[str, float]]]] = []
        for t in ts:
            got = [v for v in (image_curve_at(rs, t, keys) for rs in per[name].values()) if v is not None]
            if got:
                pts.append((t, got))
        mets = [m for m in metric_names if all(m in g for _, got in pts for g in got)]
        need = max(1, math.ceil(FEW_IMAGES * n_img))
        f = first[name]
        curves[name] = {
            "codec": f["codec"], "scale": f["scale"], "mode": f["mode"], "images": n_img,
            "images_with_points": len(per[name]), "images_failed": len(failed[name]),
            "target_bpp": [t for t, _ in pts], "bpp": [t for t, _ in pts],
            "bpp_no_headers": [mean(g.get("bpp_no_headers", t) for g in got) for t, got in pts],
            "n_images": [len(got) for _, got in pts], "few_images": [len(got) < need for _, got in pts],
            "encode_s": [mean(g["encode_s"] for g in got) for _, got in pts],
            "decode_s": [mean(g["decode_s"] for g in got) for _, got in pts],
            "metrics": {m: [mean(g[m] for g in got) for _, got in pts] for m in mets},
            "failed_settings": sorted({q for rs in per[name].values() for r in rs
                                       for q in r.get("failed_settings", ())}),
        }
    return curves


def _solid(c: dict) -> dict:
    """A curve restricted to its points not marked few_images (what BD-rates are computed on)."""
    keep = [i for i, f in enumerate(c.get("few_images", [False] * len(c["bpp"]))) if not f]
    return {**c, "bpp": [c["bpp"][i] for i in keep],
            "metrics": {m: [v[i] for i in keep] for m, v in c["metrics"].items()}}


def bd_rates(curves: dict[str, dict], anchor: str, metric_names: list[str],
             lower_better: dict[str, bool]) -> dict[str, dict[str, dict]]:
    """BD-rate (%) of each curve against the anchor per metric, with the overlap of their quality ranges
    (on the points not marked few_images: means over a minority of images would bias it)."""
    import bjontegaard as bd
    import numpy as np

    out: dict[str, dict[str, dict]] = {}
    a = _solid(curves[anchor]) if anchor in curves else None
    for name, c in curves.items():
        c = _solid(c)
        out[name] = {}
        for m in metric_names:
            if a is None or m not in a["metrics"] or m not in c["metrics"]:
                out[name][m] = {"bd_rate": None, "note": "anchor or metric missing"}
                continue
            if len(a["bpp"]) < 2 or len(c["bpp"]) < 2:
                out[name][m] = {"bd_rate": None, "note": "fewer than 2 points"}
                continue
            sign = -1.0 if lower_better.get(m) else 1.0
            ra, da = np.array(a["bpp"]), sign * np.array(a["metrics"][m])
            rt, dt = np.array(c["bpp"]), sign * np.array(c["metrics"][m])
            lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
            span = min(np.ptp(da), np.ptp(dt))
            overlap = 0.0 if hi <= lo else (1.0 if span == 0 else float((hi - lo) / span))
            if hi <= lo:
                out[name][m] = {"bd_rate": None, "overlap": 0.0, "note": "quality ranges do not overlap"}
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    v = float(bd.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False,
                                         min_overlap=0))
                except Exception as e:  # the package raises on degenerate (non-monotonic) curves
                    out[name][m] = {"bd_rate": None, "overlap": round(overlap, 3), "note": f"not computable ({e})"}
                    continue
            note = "" if overlap >= 0.75 else f"partial overlap ({overlap:.0%} of the shorter range)"
            out[name][m] = {"bd_rate": None if math.isnan(v) else round(v, 2), "overlap": round(overlap, 3),
                            "note": note}
    return out


def finish(out: Path, curves_def: list[Curve], metric_names: list[str], anchor: str, settings: dict,
           skipped_metrics: dict[str, str], lower_better: dict[str, bool]) -> dict:
    """Write points.csv, results.json and the BD-rate table from points.jsonl (the plots and report.html:
    ``report.write_report``)."""
    from .. import __version__
    from ..media.fileio import write_bytes
    from . import metrics

    names = {c.name for c in curves_def}
    rows = [r for r in load_points(out) if r["curve"] in names]
    # per-image CSV: one row per point, skipped units with their reason
    write_csv(out / "points.csv", sorted(rows, key=lambda r: (r["image"], r["curve"], r.get("target_bpp", 0))))
    curves = aggregate(rows, metric_names, settings.get("targets_bpp"))
    for c in curves_def:  # a curve no unit has reached yet is still listed
        curves.setdefault(c.name, {"codec": c.codec, "scale": c.scale,
                                   "mode": c.mode, "images": 0, "images_with_points": 0, "images_failed": 0,
                                   "target_bpp": [], "bpp": [], "bpp_no_headers": [], "n_images": [],
                                   "few_images": [], "encode_s": [], "decode_s": [], "metrics": {},
                                   "failed_settings": []})
    labels = {c.name: c.label for c in curves_def}
    bd = bd_rates(curves, anchor, [m for m in metric_names if m not in skipped_metrics], lower_better)
    skipped_units = sorted({(r["curve"], r["skipped"]) for r in rows if "skipped" in r and not r.get("error")})
    failed_units = [{"image": r["image"], "curve": r["curve"], "why": r["skipped"], "attempts": r.get("attempts", 1)}
                    for r in rows if r.get("error")]
    versions = {"cmcodec": __version__, "python": platform.python_version(), "pyiqa": metrics.version()}
    effort = settings.get("effort", "best")
    encoders = {}
    for c in sorted({c.codec for c in curves_def if c.kind == "baseline"}):
        b = refcodecs.CODECS[c]
        if b.available() is None:
            versions[f"{c} ({b.library})"] = b.version()
        e = b.efforts[effort]
        encoders[c] = {"effort": effort, "options": dict(e.options), "why": e.why,
                       "quality": list(b.quality), "small_at": b.small_at}
    result = {"name": out.name, "versions": versions, "machine": platform.platform(), "settings": settings,
              "fast": effort == "fast", "anchor": anchor, "metrics_skipped": skipped_metrics,
              "points_rule": {"interpolation": "each image's own curve, linear in log bpp, onto the targets it covers "
                                               "(10% beyond its ends)", "few_images_below": FEW_IMAGES},
              "encoders": encoders,
              "curves": {n: {"label": labels.get(n, n), **c} for n, c in curves.items()},
              "bd_rate": bd, "skipped": [{"curve": c, "why": w} for c, w in skipped_units],
              "failed_units": failed_units,
              "headers": {b.name: b.headers for b in refcodecs.CODECS.values()}}
    write_bytes(out / "results.json", json.dumps(result, indent=1).encode(), force=True)
    write_bytes(out / "bd_rate.md", bd_table(bd, anchor, labels).encode(), force=True)
    return result


@dataclass(frozen=True)
class Plan:
    """What one rd-curve run sweeps (the CLI's options, parsed)."""

    files: list[Path]
    codecs: list[str]
    scales: list[str]
    profiles: list[str]
    modes: list[str]
    metrics: tuple[str, ...]
    targets: list[float]
    anchor: str | None = None  # a curve name; None: av1 when measured, else the first curve
    metric_weights: str | None = None
    captions: dict[str, str] = field(default_factory=dict)
    model_paths: dict[str, str] = field(default_factory=dict)
    jobs: int = 1
    fast: bool = False
    dtype: str | None = None


Bar = Callable[[str, int], Any]  # (description, total) -> a progress bar with update() and close()


def run(plan: Plan, output: Path, bar: Bar, warn: Callable[[str], None]) -> dict | None:
    """The whole rd-curve command: unusable codecs and metrics skipped with the reason (warn), every unit
    swept (resumed), then the results written. Returns the results (None on ranks other than the main one,
    whose points the main rank merges and writes), with 'ran' and 'reused' unit counts."""
    from ..distributed import is_main

    if not plan.files:
        raise ConfigError("expected image files, found none")
    use_codecs = []
    for c in plan.codecs:
        why = refcodecs.get(c).available()
        if why:
            warn(f"skipping {c}: {why}")
        else:
            use_codecs.append(c)
    curves = make_curves(use_codecs, plan.scales, plan.profiles, plan.modes)
    if not curves:
        raise ConfigError("expected at least one codec or cmcodec profile to sweep, found none usable")
    names_of = [c.name for c in curves]
    anchor = plan.anchor or ("av1" if "av1" in names_of else names_of[0])
    if anchor not in names_of:  # an anchor asked for by name is never replaced silently
        raise ConfigError(f"unknown --anchor {anchor!r}: expected a curve of this run, one of {', '.join(names_of)}")
    loaded, skipped = load_metrics(plan.metrics, plan.metric_weights)  # the units' cache key: loaded once
    for n, why in skipped.items():
        warn(f"skipping metric {n}: {why}")
    names = [n for n in plan.metrics if n in loaded]
    effort = "fast" if plan.fast else "best"
    if plan.fast:
        warn("--fast: conventional codecs at their 'fast' effort (weaker anchors; recorded in results.json)")
    units = [Unit(str(f), c, plan.targets, plan.metrics, plan.metric_weights, plan.captions, plan.model_paths, effort,
                  dtype=plan.dtype) for f in plan.files for c in curves]
    done = done_units(output)
    b = bar("rd-curve", len(units))
    b.update(sum(1 for u in units if unit_key(Path(u.image).name, u.curve.name) in done))
    t0 = time.perf_counter()
    ran = sweep(units, output, plan.jobs, progress=lambda i, n: b.update(1))
    b.close()
    if not is_main():
        return None
    folder = plan.files[0].parent
    settings = {"images": str(folder), "n_images": len(plan.files), "targets_bpp": plan.targets,
                "codecs": use_codecs, "scales": plan.scales, "profiles": plan.profiles, "modes": plan.modes,
                "metrics": names, "metric_weights": plan.metric_weights, "jobs": plan.jobs, "effort": effort,
                "dtype": plan.dtype,
                "sweep_s_this_run": round(time.perf_counter() - t0, 1)}
    result = finish(output, curves, names, anchor, settings, skipped, {n: m.lower_better for n, m in loaded.items()})
    for f in result["failed_units"]:
        warn(f"unit failed after {f['attempts']} attempts: {f['image']} on {f['curve']}: {f['why']}")
    return {**result, "ran": ran, "reused": len(units) - ran}

def bd_table(bd: dict[str, dict[str, dict]], anchor: str, labels: dict[str, str]) -> str:
    """Markdown BD-rate table: percent rate change at equal quality against the anchor (negative: better)."""
    mets = sorted({m for v in bd.values() for m in v})
    lines = [f"BD-rate (%) against {labels.get(anchor, anchor)} (negative: fewer bits at equal quality)", "",
             "| curve | " + " | ".join(mets) + " |", "|---|" + "---|" * len(mets)]
    for name in sorted(bd):
        cells = []
        for m in mets:
            e = bd[name].get(m, {})
            if e.get("bd_rate") is None:
                cells.append("n/a (" + e.get("note", "") + ")")
            else:
                cells.append(f"{e['bd_rate']:+.1f}" + (f" ({e['note']})" if e.get("note") else ""))
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
