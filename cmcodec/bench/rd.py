"""Rate-distortion sweeps (issue 4): conventional codecs and cmcodec's own modes on one set of images.

A *curve* is a codec at a scale (``jpeg``, ``av1@1/4``: code at a quarter of each side, upscale back with
Lanczos) or a cmcodec profile and mode (``cmc:classic:image``). For each image and curve, each target bpp
is reached by bisection over the codec's integer setting (the closest size wins; targets below the
smallest or above the largest file are unreachable and skipped), decoded, and scored with pyiqa metrics
against the original, paired by file name. Rates are whole files (``bpp``) and, second, without the
fixed headers that ``baselines`` documents per codec (``bpp_no_headers``).

Every finished (image, curve) unit is appended to ``points.jsonl`` in the output folder, so a rerun skips
it (resume); ``jobs`` > 1 runs units in worker processes. ``finish`` writes the per-image CSV, the
aggregated JSON, plots and the BD-rate table.
"""

from __future__ import annotations

import csv
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

from ..core import refcodecs as baselines
from ..core.errors import CmcodecError, ConfigError

SCALES = {"1": 1, "1/2": 2, "1/4": 4, "1/8": 8}
POINTS_FILE = "points.jsonl"


@dataclass(frozen=True)
class Curve:
    """One line of the plot: a baseline at a scale, or a cmcodec profile and mode."""

    name: str
    kind: str  # "baseline" or "cmc"
    codec: str  # baseline name, or profile name
    scale: int = 1  # 1, 2, 4, 8 (side divisor), baselines only
    mode: str = ""  # cmc only

    @property
    def label(self) -> str:
        """Legend text."""
        if self.kind == "cmc":
            return f"cmcodec {self.codec} {self.mode}"
        base = baselines.BASELINES[self.codec].label
        return base if self.scale == 1 else f"{base} @1/{self.scale}"


def make_curves(codecs: Iterable[str], scales: Iterable[str], profiles: Iterable[str],
                modes: Iterable[str]) -> list[Curve]:
    """Curves for codec x scale and profile x mode, in that order."""
    out = []
    for c in codecs:
        baselines.get(c)
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


def find_setting(size_of: Callable[[int], int], settings: list[int], target_bytes: float) -> int | None:
    """Setting (from settings ordered small to large files) whose size is closest to target_bytes, by
    bisection; None when the target lies outside the reachable sizes (below the smallest or above the
    largest by more than 10%)."""
    lo, hi = 0, len(settings) - 1
    if size_of(settings[lo]) > target_bytes * 1.1 or size_of(settings[hi]) < target_bytes / 1.1:
        return None
    while hi - lo > 1:  # invariant: size(lo) <= target < size(hi), as far as sizes are monotonic
        mid = (lo + hi) // 2
        if size_of(settings[mid]) <= target_bytes:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda i: abs(math.log(max(size_of(settings[i]), 1) / target_bytes)))
    return settings[best]


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
    except CmcodecError as e:  # an error is retried by the next run; "no target is reachable" is not
        return [{**base, "skipped": str(e), "error": True}]
    if not rows:
        return [{**base, "skipped": "no target is reachable"}]
    return [{**base, **r} for r in rows]


def _baseline_rows(u: Unit, path: Path, ref: Image.Image, loaded: dict[str, Any]) -> list[dict]:
    """Bisection per target on a baseline at the curve's scale."""
    b = baselines.get(u.curve.codec)
    why = b.available()
    if why:
        raise CmcodecError(f"{b.name} unavailable: {why}")
    w, h = ref.size
    k = u.curve.scale
    small = ref if k == 1 else ref.resize((max(2, round(w / k)), max(2, round(h / k))), Image.LANCZOS)
    cache: dict[int, tuple[bytes, float]] = {}  # setting -> (stream, encode seconds): each setting coded once

    def coded(q: int) -> bytes:
        if q not in cache:
            t0 = time.perf_counter()
            data = b.encode(small, q)
            cache[q] = data, time.perf_counter() - t0
        return cache[q][0]

    rows = []
    done: set[int] = set()
    for t in u.targets:
        q = find_setting(lambda s: len(coded(s)), b.settings_small_to_large(), t * w * h / 8)
        if q is None or q in done:
            continue
        done.add(q)
        data, enc_s = cache[q]
        t1 = time.perf_counter()
        out = b.decode(data)
        t2 = time.perf_counter()
        out = out.crop((0, 0, *small.size)) if out.size != small.size else out
        if out.size != (w, h):
            out = out.resize((w, h), Image.LANCZOS)
        hdr = b.header_bytes(data)
        rows.append({"target_bpp": t, "setting": q, "bytes": len(data), "header_bytes": hdr,
                     "bpp": len(data) * 8 / (w * h), "bpp_no_headers": (len(data) - hdr) * 8 / (w * h),
                     "encode_s": round(enc_s, 4), "decode_s": round(t2 - t1, 4), **_score(loaded, out, ref)})
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
        budget = int(t * w * h / 8)
        t0 = time.perf_counter()
        try:
            data = codec.encode(ref, mode=u.curve.mode, profile=u.curve.codec, max_bytes=budget, caption=caption)
        except BudgetError:
            continue
        t1 = time.perf_counter()
        if len(data) in seen:
            continue
        seen.add(len(data))
        out = codec.decode(data, codec.DecodeOptions(
            model_path=u.model_paths.get(u.curve.codec, u.model_paths.get("*")), device=distributed.device(None)))
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


def sweep(units: list[Unit], out: Path, jobs: int = 1, progress: Callable[[int, int], None] | None = None) -> int:
    """Run the units not finished yet, appending their rows to points.jsonl; returns how many ran."""
    from ..distributed import barrier, is_main, merge_lines, rank_path, shard

    out.mkdir(parents=True, exist_ok=True)
    if is_main():
        merge_lines(out / POINTS_FILE)  # rows an interrupted multi-process run left behind
        _drop_errors(out)
    barrier()
    done = done_units(out)
    todo = shard([u for u in units if unit_key(Path(u.image).name, u.curve.name) not in done])
    path = rank_path(out / POINTS_FILE)

    def write(rows: list[dict]) -> None:
        with path.open("a") as f:  # one unit per write: a crash loses at most the unit in flight
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()

    if jobs <= 1:
        for i, u in enumerate(todo):
            write(run_unit(u))
            if progress:
                progress(i + 1, len(todo))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
            futs = [pool.submit(run_unit, u) for u in todo]
            for i, f in enumerate(as_completed(futs)):
                write(f.result())
                if progress:
                    progress(i + 1, len(todo))
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
    p = out / POINTS_FILE
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def aggregate(rows: list[dict], metric_names: list[str]) -> dict[str, dict]:
    """Per curve and target: means over the images that reached it (only targets every image reached)."""
    by: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    images: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        images[r["curve"]].add(r["image"])
        if "skipped" not in r:
            by[r["curve"]][r["target_bpp"]].append(r)
    curves = {}
    for name, per_t in by.items():
        n_img = len(images[name])
        ts = sorted(t for t, rs in per_t.items() if len(rs) == n_img)
        first = next(iter(per_t.values()))[0]
        mets = [m for m in metric_names if all(m in r for t in ts for r in per_t[t])]
        curves[name] = {
            "codec": first["codec"], "scale": first["scale"], "mode": first["mode"], "images": n_img,
            "target_bpp": ts,
            "bpp": [_mean(r["bpp"] for r in per_t[t]) for t in ts],
            "bpp_no_headers": [_mean(r["bpp_no_headers"] for r in per_t[t]) for t in ts],
            "encode_s": [_mean(r["encode_s"] for r in per_t[t]) for t in ts],
            "decode_s": [_mean(r["decode_s"] for r in per_t[t]) for t in ts],
            "metrics": {m: [_mean(r[m] for r in per_t[t]) for t in ts] for m in mets},
        }
    return curves


def _mean(xs: Iterable[float]) -> float:
    """Arithmetic mean."""
    xs = list(xs)
    return sum(xs) / len(xs)


def bd_rates(curves: dict[str, dict], anchor: str, metric_names: list[str],
             lower_better: dict[str, bool]) -> dict[str, dict[str, dict]]:
    """BD-rate (%) of each curve against the anchor per metric, with the overlap of their quality ranges."""
    import bjontegaard as bd
    import numpy as np

    out: dict[str, dict[str, dict]] = {}
    a = curves.get(anchor)
    for name, c in curves.items():
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


def write_csv(rows: list[dict], path: Path) -> None:
    """Per-image CSV (one row per point; skipped units keep their reason)."""
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in sorted(rows, key=lambda r: (r["image"], r["curve"], r.get("target_bpp", 0))):
            w.writerow(r)


def plot(curves: dict[str, dict], labels: dict[str, str], metric_names: list[str], out: Path,
         rate_key: str = "bpp") -> list[Path]:
    """One panel per metric, log bpp axis; PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mets = [m for m in metric_names if any(m in c["metrics"] for c in curves.values())]
    if not mets:
        return []
    cols = min(3, len(mets))
    rows = math.ceil(len(mets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    codecs = sorted({c["codec"] for c in curves.values()})
    for ax, m in zip(axes.flat, mets):
        for name, c in sorted(curves.items()):
            if m not in c["metrics"] or not c[rate_key]:
                continue
            style = {1: "-", 2: "--", 4: "-.", 8: ":"}.get(c["scale"], "-")
            marker = "*" if c["mode"] else "o"
            ax.plot(c[rate_key], c["metrics"][m], style, marker=marker, ms=4, lw=1.3,
                    color=cmap(codecs.index(c["codec"]) % 10), label=labels.get(name, name))
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (whole file)" if rate_key == "bpp" else "bits per pixel (without headers)")
        ax.set_title(m)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(mets):]:
        ax.axis("off")
    handles, texts = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="lower center", ncol=min(6, max(1, len(texts))), fontsize=7)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil(len(texts) / 6), 1, 1))
    paths = []
    for ext in ("png", "svg"):
        p = out / f"rd_{rate_key}.{ext}"
        fig.savefig(p, dpi=110)
        paths.append(p)
    plt.close(fig)
    return paths


def finish(out: Path, curves_def: list[Curve], metric_names: list[str], anchor: str, settings: dict,
           skipped_metrics: dict[str, str], lower_better: dict[str, bool]) -> dict:
    """Write points.csv, results.json, plots and the BD-rate table from points.jsonl."""
    from .. import __version__
    from . import metrics

    rows = [r for r in load_points(out) if r["curve"] in {c.name for c in curves_def}]
    write_csv(rows, out / "points.csv")
    curves = aggregate(rows, metric_names)
    labels = {c.name: c.label for c in curves_def}
    bd = bd_rates(curves, anchor, [m for m in metric_names if m not in skipped_metrics], lower_better)
    skipped_units = sorted({(r["curve"], r["skipped"]) for r in rows if "skipped" in r})
    versions = {"cmcodec": __version__, "python": platform.python_version(), "pyiqa": metrics.version()}
    for c in {c.codec for c in curves_def if c.kind == "baseline"}:
        b = baselines.BASELINES[c]
        if b.available() is None:
            versions[f"{c} ({b.library})"] = b.version()
    result = {"name": out.name, "versions": versions, "machine": platform.platform(), "settings": settings,
              "anchor": anchor, "metrics_skipped": skipped_metrics,
              "curves": {n: {"label": labels.get(n, n), **c} for n, c in curves.items()},
              "bd_rate": bd, "skipped": [{"curve": c, "why": w} for c, w in skipped_units],
              "headers": {b.name: b.headers for b in baselines.BASELINES.values()}}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    plot(curves, labels, metric_names, out, "bpp")
    plot(curves, labels, metric_names, out, "bpp_no_headers")
    (out / "bd_rate.md").write_text(bd_table(bd, anchor, labels))
    return result


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
