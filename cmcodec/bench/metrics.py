"""Image-quality metrics through pyiqa: the one place that reads pyiqa's table (names, FR/NR, direction, range,
channel, unit), loads metrics (local weights, offline rules) and scores images (rd-curve, report, evaluate).

Nothing is computed by hand. A metric that cannot be loaded is reported with the reason and skipped: weights
that are neither in ``weights_dir`` nor in the local cache under ``--offline`` (no download is attempted), a
Python package the metric imports that is missing, weights the hub did not serve. ``weights_dir`` holds local
files named after the metric (``topiq_fr.pth`` or ``topiq-fr.pth``, as CMC-Bench distributes its fine-tuned
TOPIQ), passed to pyiqa as ``pretrained_model_path``.

Besides pyiqa's own names, ``LIBRARY_ROWS`` adds rows that another library computes: ``ms_ssim_rgb`` is
MS-SSIM on RGB as CompressAI computes the published figures researchers compare against
(``pytorch_msssim.ms_ssim`` on float RGB in [0, 1], data range 1: what ``compressai.utils.eval_model``
calls), where pyiqa's ``ms_ssim`` compares the luma only, in float64 (40 times slower on a CPU: 3.5 s
against 0.09 s for a 768x512 pair here).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

# cmcodec name -> a metric another library computes, described as pyiqa describes its own (DEFAULT_CONFIGS'
# fields), plus where it comes from: module, function, keyword options, the distribution that provides it,
# and the smallest picture side it takes (pytorch_msssim: 11-px windows over 5 scales, sides over 160 px)
LIBRARY_ROWS: dict[str, dict[str, Any]] = {
    "ms_ssim_rgb": {"metric_mode": "FR", "lower_better": False, "score_range": "0, 1",
                    "metric_opts": {"test_y_channel": False},
                    "module": "pytorch_msssim", "function": "ms_ssim", "distribution": "pytorch-msssim",
                    "options": {"data_range": 1.0, "size_average": False}, "min_side": 161},
}
UNITS = {"psnr": "dB", "psnry": "dB"}  # metrics with a physical unit; the rest are scores on pyiqa's stated range
# the names CompressAI's result files use (compressai.utils.eval_model: RGB PSNR and RGB MS-SSIM)
COMPRESSAI_NAMES = {"psnr": "psnr-rgb", "ms_ssim_rgb": "ms-ssim-rgb", "psnry": "psnr-y", "ms_ssim": "ms-ssim-y"}
# a Python module a metric imports -> the distribution that provides it
PROVIDERS = {"pkg_resources": "setuptools", "pytorch_msssim": "pytorch-msssim",
             "clip": "openai-clip (git+https://github.com/openai/CLIP)"}


def mean(xs: Iterable[float]) -> float:
    """Arithmetic mean of scores (nan for none: a mode or category without images)."""
    xs = list(xs)
    return sum(xs) / len(xs) if xs else math.nan


# --- pyiqa's table -----------------------------------------------------------------------------------------

def table() -> dict[str, dict]:
    """pyiqa's DEFAULT_CONFIGS (the only place it is read)."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    return DEFAULT_CONFIGS


def _row(name: str) -> tuple[str, dict]:
    """(the library's name for it, its row: pyiqa's DEFAULT_CONFIGS row or a LIBRARY_ROWS one); the row is {}
    for an unknown name."""
    if name in LIBRARY_ROWS:
        return LIBRARY_ROWS[name]["module"], LIBRARY_ROWS[name]
    cfg = table().get(name)
    if cfg is None:
        return name, {}
    return name, {**cfg, "metric_opts": dict(cfg.get("metric_opts", {}))}  # the form stored metric keys hash


def names(kind: str | None = None) -> list[str]:
    """Every metric name (pyiqa's and the variants), or those of one kind (FR or NR)."""
    return [n for n in [*table(), *LIBRARY_ROWS] if kind is None or mode_of(n) == kind]


def mode_of(name: str) -> str | None:
    """FR or NR as pyiqa declares it, None for an unknown name (no model is built)."""
    return _row(name)[1].get("metric_mode")


def lower_better(name: str) -> bool:
    """Whether lower scores are better, as pyiqa declares it."""
    return bool(_row(name)[1].get("lower_better", False))


def score_range(name: str) -> str:
    """pyiqa's stated score range ('0, 1', '~0, ~40'), '' when it states none."""
    return str(_row(name)[1].get("score_range", ""))


def channel(name: str) -> str:
    """The colour channels a metric compares: 'Y' (luma only, pyiqa's test_y_channel) or 'RGB'."""
    return "Y" if _row(name)[1].get("metric_opts", {}).get("test_y_channel") else "RGB"


def unit(name: str) -> str:
    """'dB' for PSNR, else 'score' (on pyiqa's stated range)."""
    return UNITS.get(name, "score")


def label(name: str) -> str:
    """What an axis, a table header or a JSON field says of a metric: 'psnr (RGB, dB)', 'ms_ssim (Y, score)',
    with ', lower is better' where it is."""
    return f"{name} ({channel(name)}, {unit(name)}" + (", lower is better)" if lower_better(name) else ")")


def describe(name: str) -> dict[str, Any]:
    """Everything the outputs say of a metric."""
    base, _ = _row(name)
    source = {"library": base, "version": _dist_version(LIBRARY_ROWS[name]["distribution"])} \
        if name in LIBRARY_ROWS else {"pyiqa": base}
    return {"metric": name, **source, "mode": mode_of(name), "channel": channel(name), "unit": unit(name),
            "lower_better": lower_better(name), "score_range": score_range(name), "label": label(name),
            "compressai": COMPRESSAI_NAMES.get(name)}


# --- loading -----------------------------------------------------------------------------------------------

@dataclass
class Metric:
    """A loaded pyiqa metric."""

    name: str
    mode: str  # "FR" or "NR"
    lower_better: bool
    model: Any
    key: str = ""  # what decides its scores (metric_key)

    def __call__(self, dist: Image.Image, ref: Image.Image | None = None) -> float:
        """Score a distorted image (against ref for full-reference metrics)."""
        return self.many([dist], None if ref is None else [ref])[0]

    def many(self, dists: list[Image.Image], refs: list[Image.Image] | None = None) -> list[float]:
        """Scores of several images: one batched call per run of equal sizes (pyiqa takes N x 3 x H x W)."""
        import torch

        if self.mode == "FR" and refs is None:
            raise ValueError(f"{self.name} is full-reference: it needs the reference images")
        out: list[float] = []
        i = 0
        with torch.no_grad():
            while i < len(dists):
                j = i + 1
                while j < len(dists) and dists[j].size == dists[i].size and j - i < BATCH:
                    j += 1
                x = torch.cat([to_tensor(d) for d in dists[i:j]])
                s = self.model(x, torch.cat([to_tensor(r) for r in refs[i:j]])) if self.mode == "FR" else self.model(x)
                out += [float(v) for v in s.reshape(-1).tolist()]
                i = j
        return out


BATCH = 8  # images per metric call: memory of 8 Kodak pictures through a VGG stays under a few GB


def to_tensor(img: Image.Image):
    """PIL RGB image -> float tensor (1, 3, H, W) in [0, 1]."""
    import numpy as np
    import torch

    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def _weights_file(name: str, weights_dir: Path | None) -> Path | None:
    """Local weights of a metric in weights_dir, by name with '_' or '-'."""
    if weights_dir is None:
        return None
    for stem in (name, name.replace("_", "-")):
        for ext in (".pth", ".pt", ".safetensors"):
            p = Path(weights_dir) / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def metric_key(name: str, weights_dir: Path | str | None = None, device: str = "cpu") -> str:
    """A short hash of what decides a metric's scores: its name, its options, the version of the library that
    computes it (pyiqa or a LIBRARY_ROWS one), the local weights file's content and the kind of device it
    runs on. A stored score is reused only under the same key."""
    import json

    wf = _weights_file(name, Path(weights_dir) if weights_dir else None)
    wh = hashlib.sha256(wf.read_bytes()).hexdigest() if wf else None
    lib = _dist_version(LIBRARY_ROWS[name]["distribution"]) if name in LIBRARY_ROWS else version()
    parts = [name, _row(name), lib, wh]
    kind = str(device).split(":")[0]
    if kind != "cpu":  # a GPU's arithmetic differs in the last digits (CPU keys stay those stored before)
        parts.append(kind)
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def offline() -> bool:
    """Whether this process must not contact the hub (--offline, or HF_HUB_OFFLINE in the environment)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "CMCODEC_OFFLINE"))


class _NeedsDownload(Exception):
    """Raised instead of a download while loading metrics offline."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _no_downloads():
    """A context in which torch.hub's and pyiqa's downloaders raise _NeedsDownload instead of fetching (files in
    the local caches are still read: they never reach the downloader)."""
    import contextlib

    import pyiqa.utils.download_util as dl
    import torch.hub

    def refuse(url: str, *a: object, **kw: object) -> None:
        raise _NeedsDownload(str(url))

    @contextlib.contextmanager
    def ctx():
        saved = torch.hub.download_url_to_file, dl.download_url_to_file
        torch.hub.download_url_to_file = dl.download_url_to_file = refuse
        try:
            yield
        finally:
            torch.hub.download_url_to_file, dl.download_url_to_file = saved

    return ctx()


def why_not_loaded(e: BaseException) -> str:
    """One sentence on why a metric could not be loaded."""
    if isinstance(e, _NeedsDownload):
        return (f"needs a file downloaded ({e.url}) and this run is offline: run once online to cache it, or put "
                "the metric's weights in --metric-weights DIR")
    if isinstance(e, ImportError):
        mod = (getattr(e, "name", None) or "").split(".")[0]
        dist = PROVIDERS.get(mod, mod)
        return f"needs the Python module {mod!r}, which is not installed (pip install {dist})" if mod else \
            f"a module it imports is missing ({e})"
    if type(e).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
        return "needs weights from the hub, and this run is offline; put them in --metric-weights DIR"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"weights not available ({type(e).__name__}: {first[:120]})"


def load(names_: list[str], device: str = "cpu", weights_dir: Path | None = None) -> tuple[dict[str, Metric],
                                                                                        dict[str, str]]:
    """(loaded metrics by name, reasons for the ones that could not be loaded). Offline, a metric whose
    weights are not on this machine is skipped at once, without a network attempt."""
    import contextlib

    import pyiqa

    loaded: dict[str, Metric] = {}
    skipped: dict[str, str] = {}
    guard = _no_downloads() if offline() else contextlib.nullcontext()
    # offline, pyiqa's 'Downloading: ...' line (printed before the refused download) is not true: not shown
    quiet = contextlib.redirect_stdout(open(os.devnull, "w")) if offline() else contextlib.nullcontext()  # noqa: SIM115
    with guard, quiet:
        for name in names_:
            mode = mode_of(name)
            if mode is None:
                skipped[name] = "not a pyiqa metric"
                continue
            if name in LIBRARY_ROWS:
                try:
                    loaded[name] = Metric(name, mode, lower_better(name), _LibraryMetric(name, device),
                                          metric_key(name, device=device))
                except ImportError as e:
                    skipped[name] = why_not_loaded(e)
                continue
            wf = _weights_file(name, weights_dir)
            kw = {"pretrained_model_path": str(wf)} if wf is not None else {}
            try:
                m = pyiqa.create_metric(name, device=device, **kw)
            except Exception as e:  # pyiqa raises URLError, hub errors, OSError, ImportError... per metric
                skipped[name] = why_not_loaded(e)
                continue
            loaded[name] = Metric(name, mode, bool(m.lower_better), m, metric_key(name, weights_dir, device))
    return loaded, skipped


class _LibraryMetric:
    """A LIBRARY_ROWS metric called as pyiqa's models are: (N x 3 x H x W in [0, 1], same) -> N scores."""

    def __init__(self, name: str, device: str = "cpu") -> None:
        import importlib

        row = LIBRARY_ROWS[name]
        self.name, self.row, self.device = name, row, device
        self.fn = getattr(importlib.import_module(row["module"]), row["function"])

    def __call__(self, x, ref):
        h, w = x.shape[-2:]
        if min(h, w) < self.row["min_side"]:
            raise ValueError(f"{self.name} needs both sides of at least {self.row['min_side']} px "
                             f"({self.row['module']}'s 5 scales of an 11-px window), found {w}x{h}")
        return self.fn(x.to(self.device), ref.to(self.device), **self.row["options"]).cpu()


def _dist_version(dist: str) -> str:
    """A distribution's version without importing it ('?' when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return "?"


def version() -> str:
    """pyiqa's version (from its distribution: no import)."""
    return _dist_version("pyiqa")
