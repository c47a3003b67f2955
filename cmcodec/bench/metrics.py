"""Image-quality metrics through pyiqa: names, FR/NR, availability, local weights (rd-curve and CMC-Bench evaluation).

Nothing is computed by hand. A metric whose weights cannot be loaded (no hub here) is reported with the
reason and skipped. ``weights_dir`` holds local files named after the metric (``topiq_fr.pth`` or
``topiq-fr.pth``, as CMC-Bench distributes its fine-tuned TOPIQ), passed to pyiqa as
``pretrained_model_path``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image


def mean(xs: Iterable[float]) -> float:
    """Arithmetic mean of scores (nan for none: a mode or category without images)."""
    xs = list(xs)
    return sum(xs) / len(xs) if xs else math.nan


@dataclass
class Metric:
    """A loaded pyiqa metric."""

    name: str
    mode: str  # "FR" or "NR"
    lower_better: bool
    model: Any

    def __call__(self, dist: Image.Image, ref: Image.Image | None = None) -> float:
        """Score a distorted image (against ref for full-reference metrics)."""
        import torch

        with torch.no_grad():
            x = to_tensor(dist)
            if self.mode == "FR":
                if ref is None:
                    raise ValueError(f"{self.name} is full-reference: it needs the reference image")
                return float(self.model(x, to_tensor(ref)).item())
            return float(self.model(x).item())


def to_tensor(img: Image.Image):
    """PIL RGB image -> float tensor (1, 3, H, W) in [0, 1]."""
    import numpy as np
    import torch

    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def mode_of(name: str) -> str | None:
    """FR or NR as pyiqa declares it, None for an unknown name (no model is built)."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    cfg = DEFAULT_CONFIGS.get(name)
    return None if cfg is None else cfg.get("metric_mode")


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


def load(names: list[str], device: str = "cpu", weights_dir: Path | None = None) -> tuple[dict[str, Metric],
                                                                                       dict[str, str]]:
    """(loaded metrics by name, reasons for the ones that could not be loaded)."""
    import pyiqa

    loaded: dict[str, Metric] = {}
    skipped: dict[str, str] = {}
    for name in names:
        mode = mode_of(name)
        if mode is None:
            skipped[name] = "not a pyiqa metric"
            continue
        kw = {}
        wf = _weights_file(name, weights_dir)
        if wf is not None:
            kw["pretrained_model_path"] = str(wf)
        try:
            m = pyiqa.create_metric(name, device=device, **kw)
        except Exception as e:  # pyiqa raises URLError, hub errors, OSError... when weights are missing
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            skipped[name] = f"weights not available ({type(e).__name__}: {first[:120]})"
            continue
        loaded[name] = Metric(name, mode, bool(m.lower_better), m)
    return loaded, skipped


def version() -> str:
    """pyiqa's version."""
    import pyiqa

    return str(getattr(pyiqa, "__version__", "?"))
