"""Plots and the HTML report of an rd-curve run: what a reader looks at first.

Plots (matplotlib, Agg; PNG and SVG; log bpp axis), one panel per metric:

- ``rd_<rate>.{png,svg}``: each conventional codec once, as the best of its scale variants at each target
  rate (``envelope``: among the variants behind the most images there; each point drawn with the marker
  of the scale that made it), and cmcodec's modes as thick lines with large stars. ``<rate>`` is ``bpp``
  (whole files) or ``bpp_no_headers``.
- ``rd_<rate>_scales.{png,svg}``: the detail, one row per codec: every scale variant, the best-scale line
  in grey beneath them.

A curve's points are means over its fixed image set (results.json: ``image_set``); where that set is smaller
than the run's images its markers are hollow; cmcodec's curves carry a band of the per-image spread. Published
curves (``--reference-curves``) are drawn dashed with crosses on the whole-file axis.

``report.html`` (beside results.json; plain HTML with relative links into ``report_files/``, readable
from the disk without a server): a header (images, targets, effort, metrics with channel and unit, skipped
metrics and why, published curves and their sources), a table of contents, the whole-file plots (those
without headers behind a toggle), the BD-rate table, and for a few targets side-by-side crops of one region
of one image: the original, each codec's best scale variant, and each cmcodec mode, with bytes, the setting
('quality 63', 'budget 98 B') and metric values under each. The crops come from coding that image again: a
codec's variant is the one whose curve *for that image* is best at the target (interpolated in log bpp on
the report's first metric), coded at the setting whose file is the largest not above the target
(``setting_below``), so that every tile is at or under the target as cmcodec's are; a cmcodec mode is coded
with its rate control at the target's byte budget (``codec.budget_bytes``), through rd's own coding
functions. Metrics under a crop are those of the whole decoded image against the original, computed afresh;
the coded file lies in ``report_files/`` too. A conventional codec's stream is kept under a name that hashes
what decides its bytes (codec, scale, setting, effort options, library version), and the setting found for
each target in ``crop_settings.json``, so writing the report again decodes instead of coding anew.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from ..core import refcodecs
from ..core.errors import CmcodecError, ConfigError

REPORT_FILE = "report.html"
FILES_DIR = "report_files"
DEFAULT_TARGETS = (0.002, 0.005, 0.02)
CROP_SIDE = 160  # shown at ZOOM: a dozen tiles fit a wide screen in three rows; 40 crops stay under a few MB
ZOOM = 2  # nearest-neighbour, so that the codecs' own pixels are seen
DETAIL_STRIDE = 16  # the highest-detail search visits windows on this grid (pixels)
NEAR_FACTOR = 1.5  # a measured point farther than this factor from a target does not stand for it

SCALE_MARKERS = {1: "o", 2: "s", 4: "^", 8: "D"}
RATE_LABELS = {"bpp": "bits per pixel (whole file)", "bpp_no_headers": "bits per pixel (without headers)"}
CMC_COLORS = ("#000000", "#d62728", "#8b008b", "#006400")  # thick lines with stars, out of the codecs' cycle
CODEC_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                "#9467bd", "#aec7e8")


# --- reading results.json ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One aggregated point of a curve."""

    rate: float
    value: float
    images: int  # images behind the point
    scale: int = 1
    few: bool = False  # behind too few images for the BD-rates (results.json's few_images)
    target: float = 0.0  # the target bpp it stands for (its rate on the whole-file axis)


def lower_better_of(names: Iterable[str]) -> dict[str, bool]:
    """Whether lower is better, per metric, as pyiqa declares it (no model is built)."""
    from . import metrics

    return {n: metrics.lower_better(n) for n in names}


def series(curve: dict, metric: str, rate_key: str = "bpp") -> list[Point]:
    """The curve's points for one metric, sorted by rate (points without that metric are left out)."""
    rates = curve.get(rate_key) or []
    vals = curve.get("metrics", {}).get(metric) or []
    counts = curve.get("n_images") or [curve.get("images", 0)] * len(rates)
    few = curve.get("few_images") or [False] * len(rates)
    tgs = curve.get("target_bpp") or curve.get("bpp") or []
    pts = [Point(r, v, n, curve.get("scale", 1), bool(f), t)
           for r, v, n, f, t in zip(rates, vals, counts, few, tgs, strict=False)
           if r is not None and v is not None and r > 0]
    return sorted(pts, key=lambda p: p.rate)


def _interp(pts: list[Point], x: float, sign: float) -> float | None:
    """sign * value of the polyline through pts (log rate) at log rate x; None outside its range."""
    xs = [math.log(p.rate) for p in pts]
    if not pts or x < xs[0] - 1e-12 or x > xs[-1] + 1e-12:
        return None
    for i in range(len(xs) - 1):
        if xs[i] <= x <= xs[i + 1]:
            if xs[i + 1] == xs[i]:
                return max(pts[i].value * sign, pts[i + 1].value * sign)
            f = (x - xs[i]) / (xs[i + 1] - xs[i])
            return sign * (pts[i].value + f * (pts[i + 1].value - pts[i].value))
    return sign * pts[0].value


def envelope(variants: dict[int, list[Point]], lower_better: bool) -> list[Point]:
    """A codec's best over its scale variants at each target rate: among the variants with a point at that
    target, those behind the most images compete (a mean over the few images that reach a rate is biased
    towards the easy ones and must not beat a mean over all of them), and the best of those wins.
    Returns the winning points (each with its scale) in target order."""
    sign = -1.0 if lower_better else 1.0
    by_target: dict[float, list[Point]] = defaultdict(list)
    for pts in variants.values():
        for p in pts:
            by_target[p.target].append(p)
    out = []
    for t in sorted(by_target):
        cands = by_target[t]
        most = max(p.images for p in cands)
        out.append(max((p for p in cands if p.images == most), key=lambda p: (sign * p.value, -p.scale)))
    return out


def codec_groups(curves: dict[str, dict]) -> tuple[dict[str, dict[int, str]], list[str]]:
    """({baseline codec: {scale: curve name}}, [cmcodec curve names]) in a stable order."""
    groups: dict[str, dict[int, str]] = defaultdict(dict)
    cmc = []
    for name, c in curves.items():
        if c.get("mode"):
            cmc.append(name)
        else:
            groups[c["codec"]][int(c.get("scale", 1))] = name
    order = [b for b in refcodecs.CODECS if b in groups] + sorted(set(groups) - set(refcodecs.CODECS))
    return {g: dict(sorted(groups[g].items())) for g in order}, sorted(cmc)


def _codec_label(codec: str) -> str:
    b = refcodecs.CODECS.get(codec)
    return b.label if b else codec


# --- plots -------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_points(ax, pts: list[Point], color: str, total: int, marker: str | None = None, ms: float = 5,
                 zorder: float = 3) -> None:
    """Markers of measured points: filled when every image is behind them, hollow otherwise, and faint
    too when so few are that the BD-rates leave the point out."""
    for p in pts:
        full = p.images >= total
        ax.plot([p.rate], [p.value], marker or SCALE_MARKERS.get(p.scale, "o"), ms=ms, color=color,
                mfc=color if full else "white", mew=1.2, zorder=zorder, ls="none", alpha=0.45 if p.few else 1.0)


def _draw_curve(ax, pts: list[Point], color: str, total: int, *, style: str = "-", lw: float = 1.4,
                zorder: float = 2, label: str | None = None, marker: str | None = None, ms: float = 5) -> None:
    """A curve: the line through its points, then their markers (_draw_points) just above it."""
    ax.plot([p.rate for p in pts], [p.value for p in pts], style, lw=lw, color=color, zorder=zorder,
            **({"label": label} if label else {}))
    _draw_points(ax, pts, color, total, marker=marker, ms=ms, zorder=zorder + 1)


def _metric_list(curves: dict[str, dict], metric_names: list[str]) -> list[str]:
    return [m for m in metric_names if any(c.get("metrics", {}).get(m) for c in curves.values())]


def _axes(plt, n: int, cols: int, w: float, h: float):
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def _metric_label(metric: str) -> str:
    """'psnr (RGB, dB)': the metric with its channel and unit (bench.metrics.label)."""
    from . import metrics

    try:
        return metrics.label(metric)
    except ImportError:
        return metric


def _finish_axis(ax, metric: str, rate_key: str, lower_better: bool) -> None:
    ax.set_xscale("log")
    ax.set_xlabel(RATE_LABELS.get(rate_key, rate_key))
    ax.set_ylabel(_metric_label(metric))
    ax.grid(True, which="both", alpha=0.3)


REF_COLORS = ("#555555", "#999999", "#b8860b", "#4682b4")  # published curves: dashed, grey tones, crosses


def _draw_references(ax, refs: dict[str, dict], metric: str, rate_key: str) -> None:
    """Published curves (results.json's references) on one panel: dashed with crosses; on the whole-file
    axis only (published figures give whole-file rates). The panel keeps the rate range of the measured
    curves (a published curve that runs on to 4 bpp would otherwise squeeze them into a corner): published
    points beyond it are cut at the edge, and the quality axis grows to show those inside it."""
    if rate_key != "bpp":
        return
    drawn = [(i, r) for i, (_, r) in enumerate(sorted(refs.items())) if r.get("metrics", {}).get(metric)]
    if not drawn:
        return
    measured = ax.has_data()
    ax.set_xscale("log")  # (as _finish_axis) before the limits are read: they are a log axis's
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    seen = []
    for i, r in drawn:
        vals = r["metrics"][metric]
        ax.plot(r["bpp"], vals, "--", marker="x", ms=5, lw=1.2, color=REF_COLORS[i % len(REF_COLORS)], zorder=1.5)
        seen += [v for b, v in zip(r["bpp"], vals, strict=True) if x0 <= b <= x1]
    if measured:
        ax.set_xlim(x0, x1)
        if seen:
            lo, hi = min(y0, *seen), max(y1, *seen)
            pad = 0.04 * (hi - lo) if (lo, hi) != (y0, y1) else 0.0
            ax.set_ylim(lo - pad if lo < y0 else y0, hi + pad if hi > y1 else y1)
        else:
            ax.set_ylim(y0, y1)


def _draw_references_handles(refs: dict[str, dict], mets: list[str], rate_key: str) -> list:
    """Legend handles of the published curves that have one of the metrics drawn."""
    from matplotlib.lines import Line2D

    if rate_key != "bpp":
        return []
    return [Line2D([], [], color=REF_COLORS[i % len(REF_COLORS)], ls="--", marker="x", label=r.get("label", n))
            for i, (n, r) in enumerate(sorted(refs.items())) if any(m in r.get("metrics", {}) for m in mets)]


def _draw_band(ax, curve: dict, metric: str, rate_key: str, color: str) -> None:
    """The per-image spread (min to max over the curve's image set) of a curve's points, as a faint band."""
    sp = curve.get("spread", {}).get(metric)
    rates = curve.get(rate_key) or []
    if not sp or len(rates) < 2 or len(rates) != len(sp["min"]):
        return
    order = sorted(range(len(rates)), key=lambda i: rates[i])
    ax.fill_between([rates[i] for i in order], [sp["min"][i] for i in order], [sp["max"][i] for i in order],
                    color=color, alpha=0.12, lw=0, zorder=0.5)


def _legend_extras(plt, total: int) -> list:
    from matplotlib.lines import Line2D

    hs = [Line2D([], [], color="0.3", marker=m, ls="none", label=f"scale 1/{k}" if k > 1 else "full size")
          for k, m in SCALE_MARKERS.items()]
    hs.append(Line2D([], [], color="0.3", marker="o", mfc="white", ls="none",
                     label=f"hollow: fewer than all {total} images"))
    hs.append(Line2D([], [], color="0.3", marker="o", mfc="white", ls="none", alpha=0.45,
                     label="faint: too few for BD-rates"))
    return hs


def _save(fig, out: Path, stem: str) -> list[Path]:
    """The figure as STEM.png and STEM.svg (atomically), then closed."""
    import matplotlib

    from ..media.fileio import atomic_path

    paths = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        with atomic_path(p, force=True) as tmp, matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(tmp, dpi=110, format=ext)  # SVG text stays text: searchable and smaller
        paths.append(p)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _figure_inputs(curves: dict[str, dict], metric_names: list[str]):
    """What every figure starts from: pyplot, the metrics with data, the baseline codecs' scale variants and
    the cmcodec curves."""
    return _plt(), _metric_list(curves, metric_names), *codec_groups(curves)


def plot_overview(curves: dict[str, dict], labels: dict[str, str], metric_names: list[str], out: Path,
                  rate_key: str, lower_better: dict[str, bool], total: int,
                  references: dict[str, dict] | None = None) -> list[Path]:
    """``rd_<rate>``: codec envelopes over their scales and cmcodec modes, one panel per metric."""
    from matplotlib.lines import Line2D

    plt, mets, groups, cmc = _figure_inputs(curves, metric_names)
    if not mets:
        return []
    cols = min(3, len(mets))
    fig, axes = _axes(plt, len(mets), cols, 5.6, 4.4)
    handles = []
    for gi, codec in enumerate(groups):
        color = CODEC_COLORS[gi % len(CODEC_COLORS)]
        handles.append(Line2D([], [], color=color, lw=1.4, label=f"{_codec_label(codec)} (best scale)"))
    for ci, name in enumerate(cmc):
        handles.append(Line2D([], [], color=CMC_COLORS[ci % len(CMC_COLORS)], lw=2.8, marker="*", ms=11,
                              label=labels.get(name, name)))
    for ax, m in zip(axes.flat, mets, strict=False):  # the grid may have spare cells
        lb = lower_better.get(m, False)
        for gi, variants in enumerate(groups.values()):
            color = CODEC_COLORS[gi % len(CODEC_COLORS)]
            env = envelope({k: series(curves[n], m, rate_key) for k, n in variants.items()}, lb)
            if env:
                _draw_curve(ax, env, color, total)
        for ci, name in enumerate(cmc):
            pts = series(curves[name], m, rate_key)
            if pts:
                _draw_band(ax, curves[name], m, rate_key, CMC_COLORS[ci % len(CMC_COLORS)])
                _draw_curve(ax, pts, CMC_COLORS[ci % len(CMC_COLORS)], total, lw=2.8, zorder=4, marker="*", ms=11)
        _draw_references(ax, references or {}, m, rate_key)
        _finish_axis(ax, m, rate_key, lb)
        ax.set_title(_metric_label(m))
    handles += _draw_references_handles(references or {}, mets, rate_key)
    handles += _legend_extras(plt, total)
    ncol = min(5, len(handles))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.035 * math.ceil(len(handles) / ncol) + 0.01, 1, 1))
    return _save(fig, out, f"rd_{rate_key}")


def plot_scales(curves: dict[str, dict], labels: dict[str, str], metric_names: list[str], out: Path,
                rate_key: str, lower_better: dict[str, bool], total: int) -> list[Path]:
    """``rd_<rate>_scales``: one row per codec (its scale variants over the envelope), one column per metric."""
    plt, mets, groups, _ = _figure_inputs(curves, metric_names)
    if not mets or not groups:
        return []
    fig, axes = plt.subplots(len(groups), len(mets), figsize=(4.2 * len(mets) + 1.6, 3.0 * len(groups)),
                             squeeze=False)
    styles = {1: "-", 2: "--", 4: "-.", 8: ":"}
    for row, (codec, variants) in zip(axes, groups.items(), strict=True):
        for ax, m in zip(row, mets, strict=True):
            lb = lower_better.get(m, False)
            per = {k: series(curves[n], m, rate_key) for k, n in variants.items()}
            env = envelope(per, lb)
            if env:
                ax.plot([p.rate for p in env], [p.value for p in env], "-", lw=5, color="0.85", zorder=1,
                        label="best scale")
            for i, (k, pts) in enumerate(per.items()):
                if not pts:
                    continue
                _draw_curve(ax, pts, CODEC_COLORS[i % len(CODEC_COLORS)], total, style=styles.get(k, "-"), lw=1.2,
                            label=labels.get(variants[k], variants[k]), ms=4)
            _finish_axis(ax, m, rate_key, lb)
            ax.set_title(f"{_codec_label(codec)}: {_metric_label(m)}", fontsize=10)
        # one legend per row, right of its last panel: never over the data
        row[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    fig.tight_layout()
    return _save(fig, out, f"rd_{rate_key}_scales")


def plot_all(curves: dict[str, dict], labels: dict[str, str], metric_names: list[str], out: Path,
             lower_better: dict[str, bool], total: int, references: dict[str, dict] | None = None) -> list[Path]:
    """Every figure, for both rates."""
    paths = []
    for rk in ("bpp", "bpp_no_headers"):
        paths += plot_overview(curves, labels, metric_names, out, rk, lower_better, total, references)
        paths += plot_scales(curves, labels, metric_names, out, rk, lower_better, total)
    return paths


# --- crops -------------------------------------------------------------------------------------------------


def pick_image(files: list[Path], name: str | None) -> Path | None:
    """The image whose crops the report shows: the one named, or the first (None when there are none)."""
    if name is None:
        return files[0] if files else None
    for f in files:
        if f.name == name:
            return f
    some = ", ".join(f.name for f in files[:5]) + (", ..." if len(files) > 5 else "")
    raise ConfigError(f"report image {name!r}: expected one of the run's file names ({some})")


def parse_region(text: str) -> tuple[int, int, int, int]:
    """'X,Y,W,H' -> box (left, top, right, bottom)."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"report region: expected X,Y,W,H in pixels, found {text!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ConfigError(f"report region: expected X,Y >= 0 and W,H > 0, found {text!r}")
    return x, y, x + w, y + h


def detail_region(img: Image.Image, side: int = CROP_SIDE, stride: int = DETAIL_STRIDE) -> tuple[int, int, int, int]:
    """The side x side square (on a stride grid) with the most detail: the largest mean gradient magnitude
    of the luma, where coding artefacts show first."""
    import numpy as np

    w, h = img.size
    side = min(side, w, h)
    y = np.asarray(img.convert("L"), dtype=np.float64)
    g = np.zeros_like(y)
    g[:, 1:] += np.abs(np.diff(y, axis=1))
    g[1:, :] += np.abs(np.diff(y, axis=0))
    ii = np.pad(g.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, box = -1.0, (0, 0, side, side)
    for top in range(0, h - side + 1, stride):
        for left in range(0, w - side + 1, stride):
            s = ii[top + side, left + side] - ii[top, left + side] - ii[top + side, left] + ii[top, left]
            if s > best:
                best, box = s, (left, top, left + side, top + side)
    return box


@dataclass
class Crop:
    """One tile of the crop grid."""

    target: float | None
    key: str  # codec or cmcodec curve name ('original' for the reference)
    label: str
    curve: str = ""
    file: str = ""  # the crop's PNG, relative to the report
    stream: str = ""  # the coded file it was decoded from, relative to the report
    bytes: int | None = None
    bpp: float | None = None
    setting: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", s).strip("_")


def stream_name(image: Path, codec: str, scale: int, setting: int, effort: str) -> str:
    """File name of a conventional codec's stream in the report's folder; the hash covers what decides its
    bytes (the effort's options, the library's version), so that a changed encoder codes afresh."""
    import hashlib

    b = refcodecs.get(codec)
    opts = dict(b.efforts[effort].options) if effort in b.efforts else {}
    key = json.dumps([codec, scale, setting, effort, opts, b.version()], sort_keys=True, default=str)
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{_safe(image.stem)}_{_safe(codec)}_s{scale}_q{setting}_{tag}.{codec}"


def _nearest(rows: list[dict], target: float) -> dict | None:
    """The measured row whose bpp is nearest target in log, if within NEAR_FACTOR."""
    rows = [r for r in rows if r.get("bpp") and r.get("setting") is not None]
    if not rows:
        return None
    r = min(rows, key=lambda r: abs(math.log(r["bpp"] / target)))
    return r if abs(math.log(r["bpp"] / target)) <= math.log(NEAR_FACTOR) else None


SETTINGS_INDEX = "crop_settings.json"  # (image bytes, codec, scale, effort, version, target) -> the setting found


def setting_below(ref: Image.Image, codec: str, scale: int, target_bytes: float, effort: str,
                  start: int | None = None) -> int | None:
    """The setting whose file is the largest not above target_bytes (searched from the one closest to it,
    started at ``start``), None when even the smallest file is larger or the largest is smaller by more than
    NEAR_FACTOR."""
    from .baselines import CodedPicture, SettingFailed, downscale, find_setting

    b = refcodecs.get(codec)
    pic = CodedPicture(b, downscale(ref, scale), effort)
    settings = b.settings_small_to_large()
    q = find_setting(pic.size, settings, target_bytes, start)
    if q is None:
        try:
            q = settings[-1] if pic.size(settings[-1]) * NEAR_FACTOR >= target_bytes else None
        except SettingFailed:
            q = None
        if q is None:
            return None
    for i in range(settings.index(q), -1, -1):
        try:
            if pic.size(settings[i]) <= target_bytes:
                return settings[i]
        except SettingFailed:
            continue
    return None


def setting_text(codec: str, setting: int) -> str:
    """How a crop's setting reads: 'quality 63' for a quality scale (larger: larger files), 'setting 30
    (QP-like)' for the others; 'budget 98 B' for cmcodec (its setting is the byte budget)."""
    b = refcodecs.CODECS.get(codec)
    if b is None:
        return f"budget {setting} B"
    return f"quality {setting}" if b.small_at == "lo" else f"setting {setting} (higher: smaller files)"


def _image_curve(rows: list[dict], metric: str) -> list[Point]:
    """One image's measured points on one curve, as a polyline (mean of rows at the same rate)."""
    by: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("bpp") and r.get(metric) is not None:
            by[r["bpp"]].append(r[metric])
    return [Point(b, sum(v) / len(v), 1) for b, v in sorted(by.items())]


def best_variant(per_scale: dict[int, list[dict]], target: float, metric: str, lower_better: bool) -> int | None:
    """The scale whose curve for this image is best at target (interpolated in log bpp); a scale that does not
    span the target competes only if a measured point lies within NEAR_FACTOR of it."""
    sign = -1.0 if lower_better else 1.0
    x = math.log(target)
    cands = []
    for k, rows in per_scale.items():
        pts = _image_curve(rows, metric)
        v = _interp(pts, x, sign)
        if v is None:
            near = _nearest(rows, target)
            if near is None or near.get(metric) is None:
                continue
            v = near[metric]
        cands.append((sign * v, -k, k))
    return max(cands)[2] if cands else None


def make_crops(image: Path, rows: list[dict], curves: dict[str, dict], labels: dict[str, str], targets: list[float],
               metric_names: list[str], lower_better: dict[str, bool], files: Path, region: tuple | None = None,
               weights_dir: str | None = None, captions: dict[str, str] | None = None,
               model_paths: dict[str, str] | None = None, effort: str = "best",
               dtype: str | None = None, noise: dict[str, int] | None = None
               ) -> tuple[list[Crop], tuple[int, int, int, int]]:
    """Code the image again at each target with each codec's best variant (at its measured setting nearest
    the target from below) and each cmcodec mode (at the target's byte budget); save the crops, and the coded
    files beside them."""
    from .. import codec as cmc_codec
    from ..media.fileio import atomic_path, write_bytes
    from ..media.images import load_image
    from . import rd

    ref = load_image(image)
    w, h = ref.size
    box = region or detail_region(ref)
    if box[2] > w or box[3] > h:
        raise ConfigError(f"report region {box}: expected it inside the {w}x{h} image {image.name}")
    loaded = rd.load_metrics(tuple(metric_names), weights_dir)[0]
    mets = [m for m in metric_names if m in loaded]
    primary = mets[0] if mets else None
    files.mkdir(parents=True, exist_ok=True)

    def save(img: Image.Image, name: str) -> str:
        p = files / f"{_safe(name)}.png"
        with atomic_path(p, force=True) as tmp:
            img.crop(box).save(tmp, "PNG")
        return f"{files.name}/{p.name}"

    crops = [Crop(None, "original", "original", file=save(ref, "original"))]
    mine = [r for r in rows if r.get("image") == image.name and "skipped" not in r]
    groups, cmc = codec_groups(curves)
    by_curve: dict[str, list[dict]] = defaultdict(list)
    for r in mine:
        by_curve[r["curve"]].append(r)
    index_file = files / SETTINGS_INDEX
    index: dict[str, int] = json.loads(index_file.read_text()) if index_file.is_file() else {}
    for t in targets:
        for codec, variants in groups.items():
            c = Crop(t, codec, _codec_label(codec))
            crops.append(c)
            per = {k: by_curve.get(n, []) for k, n in variants.items()}
            k = best_variant(per, t, primary, lower_better.get(primary, False)) if primary else None
            if k is None:
                got = [r["bpp"] for rs in per.values() for r in rs if r.get("bpp")]
                span = f" (its points: {min(got):.4g} to {max(got):.4g} bpp)" if got else ""
                c.note = f"no point of {image.name} within a factor {NEAR_FACTOR} of {t} bpp{span}"
                continue
            c.curve, c.label = variants[k], labels.get(variants[k], variants[k])
            ikey = f"{rd.file_sha(image)[:16]}:{stream_name(image, codec, k, -1, effort)}@{t}"
            q = index.get(ikey)
            if q is None:
                near = _nearest(per[k], t)
                try:
                    q = setting_below(ref, codec, k, t * w * h / 8, effort, near["setting"] if near else None)
                except CmcodecError as e:
                    c.note = f"coding again failed: {e}"
                    continue
                if q is None:
                    c.note = f"no setting of {c.label} gives a file of {image.name} at most {t} bpp"
                    continue
                index[ikey] = q
            c.setting = q
            row = next((r for r in per[k] if r.get("setting") == q), None)
            stream = files / stream_name(image, codec, k, q, effort)
            try:  # a stream an earlier report coded with the same codec, options and version is decoded again
                data, out = rd.code_baseline(ref, codec, k, q, effort,
                                             stream.read_bytes() if stream.is_file() else None)
            except (CmcodecError, ValueError) as e:
                c.note = f"coding again failed: {e}"
                continue
            write_bytes(stream, data, force=True)
            c.stream = f"{files.name}/{stream.name}"
            _fill(c, data, out, ref, loaded, row, save, f"{t}_{variants[k]}")
        for name in cmc:
            cv = curves[name]
            c = Crop(t, name, labels.get(name, name), curve=name)
            crops.append(c)
            budget = cmc_codec.budget_bytes(w, h, t)  # exactly as the sweep and `encode --bpp` compute it
            c.setting = budget
            cap = (captions or {}).get(image.name) or (captions or {}).get(image.stem)
            mp = (model_paths or {}).get(cv["codec"], (model_paths or {}).get("*"))
            try:
                data, out = rd.code_cmc(ref, cv["codec"], cv["mode"], budget, cap, dtype, mp, noise=noise)
            except CmcodecError as e:
                c.note = f"not coded at {budget} bytes: {e}"
                continue
            stream = files / f"{_safe(image.stem)}_{_safe(name)}_{budget}.cmc"
            write_bytes(stream, data, force=True)
            c.stream = f"{files.name}/{stream.name}"
            row = next((r for r in by_curve.get(name, []) if r.get("setting") == budget), None)
            _fill(c, data, out, ref, loaded, row, save, f"{t}_{name}")
    write_bytes(index_file, json.dumps(index, indent=1, sort_keys=True).encode(), force=True)
    return crops, box


def _fill(c: Crop, data: bytes, out: Image.Image, ref: Image.Image, loaded: dict[str, Any], row: dict | None,
          save, name: str) -> None:
    w, h = ref.size
    c.bytes, c.bpp = len(data), len(data) * 8 / (w * h)
    c.metrics = {n: float(m(out, ref)) if m.mode == "FR" else float(m(out)) for n, m in loaded.items()}
    c.file = save(out, name)
    if row is not None and row.get("bytes") not in (None, len(data)):
        c.note = f"the sweep's file had {row['bytes']} bytes"


# --- HTML --------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1600px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th:first-child,td:first-child{text-align:left}.note{color:#777;font-size:.85em}
.plot img{max-width:100%;height:auto;border:1px solid #eee}
.grid{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start}
figure.crop{margin:0;width:var(--w);font-size:.8em}
figure.crop img{width:var(--w);height:var(--h);image-rendering:pixelated;display:block;border:1px solid #ccc}
figure.crop .missing{width:var(--w);height:var(--h);background:#f3f3f3;display:flex;align-items:center;
justify-content:center;text-align:center;color:#888;border:1px dashed #ccc}
figure.crop figcaption div{margin-top:.15em}
"""


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def bd_table_html(result: dict, labels: dict[str, str]) -> str:
    """BD-rate table of results.json as HTML: per cell the mean over images and their count, or a sentence."""
    from .rd import _row_order

    bd = result.get("bd_rate", {})
    mets = list(dict.fromkeys(m for v in bd.values() for m in v))
    described = result.get("metrics", {})
    anchor = result.get("anchor", "")
    head = "".join(f"<th>{html.escape(described.get(m, {}).get('label', m))}</th>" for m in mets)
    left = result.get("bd_rate_metrics_left_out", {})
    out = [f"<p>BD-rate (%) against <b>{html.escape(labels.get(anchor, anchor))}</b>: the rate change at equal "
           "quality (negative: fewer bits), computed per image on its own points and averaged over the images where "
           "both curves overlap (JVET common test conditions); [n/N]: images in the mean / images both curves "
           "have. Rows marked <i>best scale</i> pool a codec's scale variants; <i>published</i> rows are figures "
           "from the files given, compared with the anchor's mean curve.</p>"]
    if left:
        out.append('<p class="note">Not in the table: ' + "; ".join(f"{html.escape(m)} ({html.escape(w)})"
                                                                  for m, w in left.items()) + ".</p>")
    out.append(f'<table class="bd"><thead><tr><th>curve</th>{head}</tr></thead><tbody>')
    for name in sorted(bd, key=_row_order):
        cells = []
        for m in mets:
            e = bd[name].get(m, {})
            if e.get("bd_rate") is None:
                cells.append(f'<td class="na">n/a: <span class="note">{html.escape(e.get("note") or "not computed")}'
                             "</span></td>")
            else:
                n = f' <span class="count">[{e["images"]}/{e["of"]}]</span>' if e.get("images") is not None else ""
                note = f' <span class="note">{html.escape(e["note"])}</span>' if e.get("note") else ""
                cells.append(f'<td>{e["bd_rate"]:+.1f}{n}{note}</td>')
        out.append(f'<tr data-curve="{html.escape(name)}"><td>{html.escape(labels.get(name, name))}</td>'
                   + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _crop_html(c: Crop) -> str:
    attrs = (f'data-target="{c.target if c.target is not None else ""}" data-key="{html.escape(c.key)}"'
             f' data-curve="{html.escape(c.curve)}"')
    if c.file:
        body = f'<img src="{html.escape(c.file)}" alt="{html.escape(c.label)}">'
    else:
        body = f'<div class="missing">{html.escape(c.note or "not coded")}</div>'
    lines = [f"<b>{html.escape(c.label)}</b>"]  # one <div> per line below the tile
    if c.bytes is not None:
        size = f'<span class="bytes">{c.bytes} bytes</span>'
        if c.stream:
            size = f'<a href="{html.escape(c.stream)}" download>{size}</a>'
        lines.append(f"{size}, {c.bpp:.4f} bpp"
                     + (f", {html.escape(setting_text(c.key, c.setting))}" if c.setting is not None else ""))
        lines.append(", ".join(f"{html.escape(_metric_label(n))} {_fmt(v)}" for n, v in c.metrics.items()))
        if c.note:
            lines.append(f'<span class="note">{html.escape(c.note)}</span>')
    return (f'<figure class="crop" {attrs}>{body}<figcaption>' + "".join(f"<div>{x}</div>" for x in lines)
            + "</figcaption></figure>")


def _header(result: dict) -> list[str]:
    """What a reader needs before the figures: images, targets, effort, metrics (with the skipped ones and
    why), published curves with their sources, versions."""
    s = result.get("settings", {})
    fast = result.get("fast")
    described = result.get("metrics", {})
    facts = [f"<b>{s.get('n_images', '?')} images</b> from <code>{html.escape(str(s.get('images', '')))}</code>",
             f"targets {', '.join(str(t) for t in s.get('targets_bpp', []))} bpp",
             "<b>effort: fast</b> (--fast: conventional codecs at faster, weaker settings: weaker anchors)" if fast
             else "effort: best (each codec's strongest documented settings)"]
    out = ["<ul>" + "".join(f"<li>{f}</li>" for f in facts)]
    mets = ", ".join(html.escape(described.get(m, {}).get("label", m)) for m in s.get("metrics", []))
    out.append(f"<li>metrics: {mets or 'none'}</li>")
    skipped = result.get("metrics_skipped", {})
    if skipped:
        out.append("<li>metrics skipped: <ul>" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(w)}</li>"
                                                         for n, w in skipped.items()) + "</ul></li>")
    refs = result.get("references", {})
    if refs:
        out.append("<li>published curves (drawn dashed with crosses, not measured here): <ul>" + "".join(
            f"<li>{html.escape(r.get('label', n))}: <code>{html.escape(r.get('source', ''))}</code></li>"
            for n, r in refs.items()) + "</ul></li>")
    out.append("</ul>")
    vers = ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in result.get("versions", {}).items())
    out.append(f'<p class="note">{vers}</p>')
    return out


def render(result: dict, plots: list[str], crops: list[Crop], box: tuple[int, int, int, int] | None,
           image_name: str | None, region_rule: str, zoom: int = ZOOM) -> str:
    """The report page (plain HTML, relative links, no script): header, table of contents, the whole-file
    plots (those without headers behind a toggle), the BD-rate table, the crops."""
    labels = {n: c.get("label", n) for n, c in result.get("curves", {}).items()}
    labels.update({n: v for n, v in result.get("envelopes", {}).items()})
    labels.update({n: r.get("label", n) for n, r in result.get("references", {}).items()})
    title = f"rd-curve report: {result.get('name', '')}"
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>", *_header(result)]
    toc = [("rd", "Rate-distortion"), ("bd", "BD-rate")]
    if crops:
        toc.append(("crops", f"Crops of {image_name or ''}"))
    parts.append('<nav class="toc"><b>Contents</b><ol>' + "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>'
                                                                  for a, t in toc) + "</ol></nav>")
    parts.append('<h2 id="rd">Rate-distortion</h2><p>Each conventional codec is drawn as the best of its scale '
                 "variants at each rate (the marker says which scale made each point); cmcodec modes are the thick "
                 "lines with stars, their band the spread over the images; published curves are dashed with "
                 "crosses. Each point is a mean over one fixed set of images per curve (results.json: "
                 "image_set). Axes: whole-file bits per pixel; metrics with their channel and unit.</p>")

    def img(p: str) -> str:
        return (f'<p class="plot"><a href="{html.escape(p[:-4] + ".svg")}"><img src="{html.escape(p)}" '
                f'alt="{html.escape(p)}"></a></p>')

    whole = [p for p in plots if "no_headers" not in p]
    parts += [img(p) for p in whole]
    rest = [p for p in plots if "no_headers" in p]
    if rest:  # the same figures on the rate without the codecs' fixed headers: one click away, not a second copy
        parts.append("<details><summary>The same figures without the fixed headers (bits per pixel of the "
                     "coded data alone)</summary>" + "".join(img(p) for p in rest) + "</details>")
    parts.append('<h2 id="bd">BD-rate</h2>' + bd_table_html(result, labels))
    if crops:
        x0, y0, x1, y1 = box
        w, h = (x1 - x0) * zoom, (y1 - y0) * zoom
        parts.append(f'<h2 id="crops">Crops of {html.escape(image_name or "")}</h2>'
                     f"<p>Region x={x0}, y={y0}, {x1 - x0}x{y1 - y0} px "
                     f"({html.escape(region_rule)}), shown at {zoom}x with square pixels. Each codec is shown at "
                     "its best scale for this image, coded again at the setting of the sweep's point nearest the "
                     "target from below (so every tile is at or under the target); cmcodec modes at the target's "
                     "byte budget. Metrics are of the whole decoded image; the bytes link to the coded file.</p>")
        style = f'style="--w:{w}px;--h:{h}px"'
        orig = [c for c in crops if c.target is None]
        for tg in sorted({c.target for c in crops if c.target is not None}):
            row = [replace(c, target=tg) for c in orig] + [c for c in crops if c.target == tg]
            parts.append(f'<h3>{tg} bpp</h3><div class="grid" data-target="{tg}" {style}>'
                         + "".join(_crop_html(c) for c in row) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(out: Path, result: dict, rows: list[dict], metric_names: list[str] | None = None,
                 lower_better: dict[str, bool] | None = None, image: Path | None = None,
                 targets: list[float] | None = None, region: tuple[int, int, int, int] | None = None,
                 weights_dir: str | None = None, captions: dict[str, str] | None = None,
                 model_paths: dict[str, str] | None = None) -> Path:
    """Plots and report.html for a finished run (result: the results.json dict, rows: points.jsonl rows;
    metric_names default to the run's, lower_better to pyiqa's declarations)."""
    from ..media.fileio import write_bytes

    settings = result.get("settings", {})
    names = list(metric_names if metric_names is not None else settings.get("metrics", []))
    curves = result.get("curves", {})
    labels = {n: c.get("label", n) for n, c in curves.items()}
    lb = {**lower_better_of(names), **(lower_better or {})}
    total = int(settings.get("n_images") or max((c.get("images", 0) for c in curves.values()), default=0))
    paths = plot_all(curves, labels, names, out, lb, total, result.get("references"))
    pngs = [p.name for p in paths if p.suffix == ".png"]
    crops: list[Crop] = []
    box = None
    if image is not None:
        crops, box = make_crops(image, rows, curves, labels, list(targets or DEFAULT_TARGETS), names, lb,
                                out / FILES_DIR, region, weights_dir, captions, model_paths,
                                settings.get("effort", "best"), settings.get("dtype"), settings.get("noise"))
        used = {Path(f).name for c in crops for f in (c.file, c.stream) if f} | {SETTINGS_INDEX}
        for stale in (out / FILES_DIR).iterdir():  # files of an earlier report (other targets, codecs, encoders)
            if stale.is_file() and stale.name not in used:
                stale.unlink()
    rule = "given" if region else f"the {CROP_SIDE}-px square with the largest mean luma gradient"
    page = render(result, pngs, crops, box, image.name if image else None, rule)
    write_bytes(out / REPORT_FILE, page.encode(), force=True)
    return out / REPORT_FILE
