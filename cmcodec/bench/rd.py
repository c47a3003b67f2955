"""Rate-distortion sweeps: conventional codecs and cmcodec's own modes on one set of images.

A *curve* is a codec at a scale (``jpeg``, ``av1@1/4``: code at a quarter of each side, upscale back with
Lanczos) or a cmcodec profile and mode (``cmc:classic:image``). For each image and curve, each target bpp
is searched for over the codec's integer setting (``bench.baselines.find_setting``: started from a
predicted setting, each setting of an (image, scale) coded once; a setting at which the encoder fails is
skipped, not fatal), decoded, and scored with pyiqa metrics against the original, paired by file name.
Rates are whole files (``bpp``) and, second, without the fixed headers that ``core.refcodecs`` documents
per codec (``bpp_no_headers``).

Points of a curve (``aggregate``): each image's own points form its curve, interpolated linearly in log bpp
onto the targets it covers (from its smallest to its largest file, 10% beyond either end); a curve's points
are means over one fixed set of images (``image_set``), with the per-image spread. BD-rates (``bd_rates``)
are computed per image on its own points and averaged over the images where both curves overlap (JVET common
test conditions), full-reference metrics only, with an envelope row per codec over its scales.

Every finished (image, curve) unit is appended to ``points.jsonl`` in the output folder with the key of what
made it (``Unit.made_by``) and each score with its metric's key; a rerun reuses a unit only under the same
key, computes a metric its stored points lack on their files coded again, and redoes the rest (``sweep``); a
unit that fails is retried once at once and, failing again, recorded with its error (and rerun by the next
run). ``jobs`` > 1 runs units in worker processes. ``run`` is the whole command: sweep, then ``finish``
writes the per-image CSV, the aggregated JSON, the BD-rate table and CompressAI-format JSON per curve from
the rows of this run's keys (``report`` draws the plots and writes report.html).
"""

from __future__ import annotations

import json
import math
import platform
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..core import refcodecs
from ..core.errors import CmcodecError, ConfigError, ImageInputError
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
    from ..core.profiles import definition_tag

    for p in profiles:
        for m in modes:  # a user profile's curve names its definition: another one never resumes it
            out.append(Curve(f"cmc:{p}{definition_tag(p)}:{m}", "cmc", p, 1, m))
    return out


def targets_from_range(lo: float, hi: float, n: int) -> list[float]:
    """n target bpp values spaced evenly on a log axis from lo to hi."""
    if not 0 < lo < hi or n < 1:
        raise ConfigError(f"bpp range must be 0 < lo < hi with at least one point; found {lo}:{hi}, {n} points")
    if n == 1:
        return [lo]
    return [round(lo * (hi / lo) ** (i / (n - 1)), 6) for i in range(n)]



# --- one unit of work: an image on one curve ---------------------------------------------------------------

_METRICS: dict[str, Any] = {}
RD_RULES = 1  # version of the sweep's own rules (target search, REACH): part of every unit's key


def load_metrics(names: tuple[str, ...], weights_dir: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """(loaded metrics, reasons for the skipped ones), loaded once per process, on this process's GPU where
    there is one (its own under a launcher), else on the CPU."""
    key = (names, weights_dir)
    if key not in _METRICS:
        import torch

        from .. import distributed
        from . import metrics

        dev = distributed.device(None) or ("cuda" if torch.cuda.is_available() else "cpu")
        _METRICS[key] = metrics.load(list(names), device=dev, weights_dir=Path(weights_dir) if weights_dir else None)
    return _METRICS[key]


def _metrics(names: tuple[str, ...], weights_dir: str | None) -> dict[str, Any]:
    """The loaded metrics of load_metrics."""
    return load_metrics(names, weights_dir)[0]


def _score(loaded: dict[str, Any], outs: list[Image.Image], ref: Image.Image) -> list[dict[str, Any]]:
    """Every loaded metric on each decoded image (one batched call per metric). A metric that cannot score
    this picture (pyiqa's MS-SSIM needs sides over 160 px) is left out of its rows, which say why under
    ``metric_errors``; the other metrics and the points stay."""
    cols, errors = {}, {}
    for n, m in loaded.items():
        try:
            cols[n] = m.many(outs, [ref] * len(outs)) if m.mode == "FR" else m.many(outs)
        except Exception as e:  # pyiqa raises RuntimeError, ValueError... on pictures a metric cannot take
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            errors[n] = f"{type(e).__name__}: {first[:160]} ({ref.width}x{ref.height} picture)"
    rows: list[dict[str, Any]] = [{n: round(v[i], 6) for n, v in cols.items()} for i in range(len(outs))]
    if errors:
        for r in rows:
            r["metric_errors"] = dict(errors)
    return rows


_SHA: dict[tuple[str, int, int], str] = {}


def file_sha(path: Path) -> str:
    """sha256 of a file's bytes (cached by path, size and mtime)."""
    import hashlib

    st = path.stat()
    k = (str(path), st.st_size, st.st_mtime_ns)
    if k not in _SHA:
        _SHA[k] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _SHA[k]


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
    previous: list[dict] = field(default_factory=list)  # stored rows of this key lacking some current metric
    noise: dict[str, int] = field(default_factory=dict)  # noise curves' noise_steps / noise_log2_k (EncodeOptions)
    _key: str = ""

    @property
    def caption(self) -> str | None:
        p = Path(self.image)
        return self.captions.get(p.name) or self.captions.get(p.stem)

    @property
    def model_path(self) -> str | None:
        return self.model_paths.get(self.curve.codec, self.model_paths.get("*"))

    def made_by(self) -> dict[str, Any]:
        """Everything that decides the unit's points (metrics apart: each score has its own key): the image's
        bytes, the curve, the targets and, for a codec, its row's effort options and library version; for a
        cmcodec curve, cmcodec's version, the caption, the model folder and the precision; for a noise curve, the
        files' T and log2 K (spec §10.5)."""
        from .. import __version__

        c = self.curve
        d: dict[str, Any] = {"rules": RD_RULES, "image_sha256": file_sha(Path(self.image)), "curve": c.name,
                             "kind": c.kind, "codec": c.codec, "scale": c.scale, "mode": c.mode,
                             "targets": sorted(self.targets)}
        if c.kind == "baseline":
            b = refcodecs.get(c.codec)
            d.update(effort=self.effort, options=dict(b.efforts[self.effort].options), library=b.library,
                     version=b.version() if b.available() is None else None)
        else:
            from ..core.profiles import definition_hash, get_profile

            d.update(cmcodec=__version__, profile=definition_hash(get_profile(c.codec)), caption=self.caption,
                     model=model_key(self.model_path), dtype=self.dtype)
            if c.mode == "noise":
                from ..codec import noise_shape

                d["noise_shape"] = noise_shape(get_profile(c.codec), self.noise.get("noise_steps"),
                                               self.noise.get("noise_log2_k"))
        return d

    def key(self) -> str:
        """A short hash of made_by (the resume key stored with every row; computed once per unit)."""
        import hashlib

        if not self._key:
            text = json.dumps(self.made_by(), sort_keys=True, default=str)
            self._key = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._key


def model_key(folder: str | None) -> str | None:
    """A local model folder as outputs are keyed by it: its absolute path and its files' signature (replaced
    weights at the same path are another model)."""
    if not folder:
        return None
    import os

    from ..models.loading import folder_signature

    return f"{os.path.abspath(folder)} (files {folder_signature(folder)})"


def run_unit(u: Unit) -> list[dict]:
    """Rows of one unit (one per reached target, or one row with 'skipped' saying why none). With
    ``previous`` rows, only their missing metrics are computed, on the same files coded again."""
    from ..media.images import load_image

    path = Path(u.image)
    ref = load_image(path)
    w, h = ref.size
    loaded = _metrics(u.metrics, u.weights_dir)
    base = {"image": path.name, "curve": u.curve.name, "codec": u.curve.codec, "scale": u.curve.scale,
            "mode": u.curve.mode, "width": w, "height": h, "made_by": u.key()}
    if u.previous:
        rows = _top_up(u, ref, loaded)
        if rows is not None:
            return rows
    try:
        run = _baseline_rows if u.curve.kind == "baseline" else _cmc_rows
        rows = run(u, path, ref, loaded)
    except CmcodecError as e:  # an error is retried; "no target is reachable" is not
        return [{**base, "skipped": str(e), "error": True}]
    keys = {n: m.key for n, m in loaded.items()}
    if not rows:
        return [{**base, "skipped": "no target is reachable"}]
    return [{**base, **r, "metric_keys": keys} if "skipped" not in r else {**base, **r} for r in rows]


def _top_up(u: Unit, ref: Image.Image, loaded: dict[str, Any]) -> list[dict] | None:
    """The previous rows with the metrics they lack (or whose key changed) computed on their files coded
    again at their settings; None when a file does not come out byte-identical (the unit is then redone)."""
    need = {n: m for n, m in loaded.items()
            if any(r.get("metric_keys", {}).get(n) != m.key for r in u.previous if "skipped" not in r)}
    rows = [dict(r) for r in u.previous]
    pts = [r for r in rows if "skipped" not in r]
    outs = []
    try:
        for r in pts:
            if u.curve.kind == "baseline":
                data, out = code_baseline(ref, u.curve.codec, u.curve.scale, int(r["setting"]), u.effort)
            else:
                data, out = code_cmc(ref, u.curve.codec, u.curve.mode, int(r["setting"]), u.caption, u.dtype,
                                     u.model_path, noise=u.noise)
            if len(data) != r["bytes"]:
                return None
            outs.append(out)
    except CmcodecError:
        return None
    for r, s in zip(pts, _score(need, outs, ref), strict=True):
        errs = {k: v for k, v in r.pop("metric_errors", {}).items() if k not in need}
        errs.update(s.pop("metric_errors", {}))
        r.update(s, **({"metric_errors": errs} if errs else {}))
        r["metric_keys"] = {**r.get("metric_keys", {}), **{n: m.key for n, m in need.items()}}
        r["topped_up"] = sorted(need)
    return rows


def decode_back(b: refcodecs.RefCodec, data: bytes, small: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    """A conventional codec's stream decoded, its padding cropped, upscaled (Lanczos) to the original size."""
    out = b.decode(data)
    out = out.crop((0, 0, *small)) if out.size != small else out
    if out.size != size:
        out = out.resize(size, Image.LANCZOS)
    return out.convert("RGB")


def code_baseline(ref: Image.Image, codec: str, scale: int, setting: int, effort: str = "best",
                  data: bytes | None = None) -> tuple[bytes, Image.Image]:
    """A conventional codec at a scale, setting and effort, as the sweep codes (Lanczos down, code, decode,
    Lanczos back up), or only ``data`` decoded when given: (stream, decoded image at ref's size)."""
    b = refcodecs.get(codec)
    small = baselines.downscale(ref, scale)
    if data is None:
        data = b.encode(small, setting, effort)
    return data, decode_back(b, data, small.size, ref.size)


def code_cmc(ref: Image.Image, profile: str, mode: str, budget: int, caption: str | None, dtype: str | None = None,
             model_path: str | None = None, times: dict[str, float] | None = None,
             noise: dict[str, int] | None = None) -> tuple[bytes, Image.Image]:
    """cmcodec at a byte budget with its own rate control, as ``encode --max-bytes`` does, and decoded:
    (file, decoded image at ref's size); ``times`` gets encode_s and decode_s; ``noise``: the noise mode's
    noise_steps / noise_log2_k (EncodeOptions fields). BudgetError when no file fits."""
    from .. import codec, distributed

    t0 = time.perf_counter()
    data = codec.encode(ref, mode=mode, profile=profile, max_bytes=budget, caption=caption,
                        options=codec.EncodeOptions(  # noise mode runs the model while encoding (spec §10)
                            dtype=dtype, device=distributed.device(None), model_path=model_path, **(noise or {})))
    t1 = time.perf_counter()
    out = codec.decode(data, codec.DecodeOptions(model_path=model_path, device=distributed.device(None),
                                                 dtype=dtype)).convert("RGB")
    if times is not None:
        times.update(encode_s=round(t1 - t0, 4), decode_s=round(time.perf_counter() - t1, 4))
    return data, out if out.size == ref.size else out.resize(ref.size, Image.LANCZOS)


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
    rows, outs = [], []
    done: set[int] = set()
    for t in u.targets:
        start = _predict(pic, settings, t * w * h / 8) or u.hints.get(t)
        q = baselines.find_setting(pic.size, settings, t * w * h / 8, start)
        if q is None or q in done:
            continue
        done.add(q)
        enc = pic.done[q]
        t1 = time.perf_counter()
        _, out = code_baseline(ref, b.name, u.curve.scale, q, u.effort, enc.data)
        t2 = time.perf_counter()
        outs.append(out)
        hdr = b.header_bytes(enc.data)
        n = len(enc.data)
        rows.append({"target_bpp": t, "setting": q, "bytes": n, "header_bytes": hdr, "bpp": n * 8 / (w * h),
                     "bpp_no_headers": (n - hdr) * 8 / (w * h), "encode_s": round(enc.seconds, 4),
                     "decode_s": round(t2 - t1, 4)})
    for r, s in zip(rows, _score(loaded, outs, ref), strict=True):
        r.update(s)
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
    from .. import codec
    from ..core.bitstream import read_header
    from ..core.errors import BudgetError

    w, h = ref.size
    rows, outs = [], []
    seen: set[int] = set()
    for t in u.targets:
        budget = codec.budget_bytes(w, h, t)  # exact, as `encode --bpp` computes it (floats round 29 to 28.999)
        if budget < 1:
            continue  # below one byte no file exists
        times: dict[str, float] = {}
        try:
            data, out = code_cmc(ref, u.curve.codec, u.curve.mode, budget, u.caption, u.dtype, u.model_path, times,
                                 u.noise)
        except BudgetError:
            continue
        if len(data) in seen:
            continue
        seen.add(len(data))
        outs.append(out)
        hdr = read_header(data).overhead_bytes
        rows.append({"target_bpp": t, "setting": budget, "bytes": len(data), "header_bytes": hdr,
                     "bpp": len(data) * 8 / (w * h), "bpp_no_headers": (len(data) - hdr) * 8 / (w * h),
                     **times})
    for r, s in zip(rows, _score(loaded, outs, ref), strict=True):
        r.update(s)
    return rows


# --- the sweep ---------------------------------------------------------------------------------------------

def unit_key(image: str, curve: str) -> str:
    """Identity of a unit in points.jsonl (what it is made by is its row's made_by)."""
    return f"{image}\t{curve}"


def current_rows(rows: list[dict]) -> list[dict]:
    """Per unit, the rows of its last write (a unit redone or topped up appends all its rows again under a new
    write id; older writes stay in the file until the next sweep compacts it; rows of files written before
    write ids count as one write per unit)."""
    last = {unit_key(r["image"], r["curve"]): r.get("write", "") for r in rows}
    return [r for r in rows if r.get("write", "") == last[unit_key(r["image"], r["curve"])]]


def unit_state(u: Unit, rows_of: dict[str, list[dict]]) -> str:
    """'done', 'top-up' (made by this key, some current metric missing) or 'todo' for a unit."""
    rows = rows_of.get(unit_key(Path(u.image).name, u.curve.name), [])
    if not rows or any(r.get("error") or r.get("made_by") != u.key() for r in rows):
        return "todo"
    pts = [r for r in rows if "skipped" not in r]
    loaded = _metrics(u.metrics, u.weights_dir)
    if any(r.get("metric_keys", {}).get(n) != m.key for r in pts for n, m in loaded.items()):
        return "top-up"
    return "done"


def _compact(out: Path) -> None:
    """Rewrite points.jsonl (atomically) with only each unit's current write, less failed units (which run
    again)."""
    from ..media.fileio import write_bytes

    rows = load_points(out)
    keep = [r for r in current_rows(rows) if not r.get("error")]
    if len(keep) != len(rows):
        write_bytes(out / POINTS_FILE, "".join(json.dumps(r) + "\n" for r in keep).encode(), force=True)


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
    """run_unit, once more at once if it failed; the rows say how many attempts it took and carry one write
    id (the unit's rows in points.jsonl are those of its last write)."""
    import uuid

    attempt = 1
    rows = run_unit(u)
    while attempt <= RETRIES and any(r.get("error") for r in rows):
        attempt += 1
        rows = run_unit(u)
    wid = uuid.uuid4().hex[:12]
    for r in rows:
        r["attempts"], r["write"] = attempt, wid
    return rows


@dataclass
class SweepCount:
    """What a sweep did: units computed, topped up (a metric added to stored points) and reused."""

    ran: int = 0
    topped_up: int = 0
    reused: int = 0


def sweep(units: list[Unit], out: Path, jobs: int = 1, progress: Callable[[int, int], None] | None = None,
          force: bool = False) -> SweepCount:
    """Run the units whose stored rows were not made by their key (all with force), top up those missing a
    current metric, appending their rows to points.jsonl; returns the counts."""
    from ..distributed import barrier, is_main, merge_lines, rank_path, shard
    from ..media.fileio import append_jsonl

    out.mkdir(parents=True, exist_ok=True)
    if is_main():
        merge_lines(out / POINTS_FILE)  # rows an interrupted multi-process run left behind
        _compact(out)
    barrier()
    stored = current_rows(load_points(out))
    rows_of: dict[str, list[dict]] = defaultdict(list)
    for r in stored:
        rows_of[unit_key(r["image"], r["curve"])].append(r)
    keys = {u.key() for u in units}
    count = SweepCount()
    work = []
    for u in units:
        state = "todo" if force else unit_state(u, rows_of)
        if state == "done":
            count.reused += 1
            continue
        if state == "top-up":
            u.previous = rows_of[unit_key(Path(u.image).name, u.curve.name)]
            count.topped_up += 1
        else:
            count.ran += 1
        work.append(u)
    hints = _Hints([r for r in stored if r.get("made_by") in keys])
    todo = shard(work)
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
    return count


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


def image_set(cover: dict[str, set[float]], ts: list[float], n_images: int) -> tuple[list[str], list[float]]:
    """The fixed set of images a curve's points are means over, and the targets shown: among runs of
    consecutive targets, the one maximising (images covering every target of the run) x (targets), with at
    least FEW_IMAGES of the curve's images where any run has them (ties: more images, then lower rates)."""
    need = max(1, math.ceil(FEW_IMAGES * n_images))
    best: tuple[tuple, list[str], list[float]] | None = None
    for i in range(len(ts)):
        for j in range(i, len(ts)):
            run_ = ts[i:j + 1]
            imgs = sorted(im for im, c in cover.items() if all(t in c for t in run_))
            if not imgs:
                break
            score = (len(imgs) >= need, len(imgs) * len(run_), len(imgs), -i)
            if best is None or score > best[0]:
                best = (score, imgs, run_)
    return ([], []) if best is None else (best[1], best[2])


def aggregate(rows: list[dict], metric_names: list[str], targets: list[float] | None = None) -> dict[str, dict]:
    """Per curve, its points as means over one fixed set of images (image_set), each image's own curve
    interpolated onto the targets (see the module docstring), with the per-image spread (min, max, standard
    deviation) of every value; the targets some images reach outside the set are listed with their counts.

    targets: the run's targets (default: every target_bpp in the rows). Curves whose every image failed or
    reached nothing are kept with no points and their counts, so a reader sees them.
    """
    import statistics

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
        at = {im: {t: v for t in ts if (v := image_curve_at(rs, t, keys)) is not None} for im, rs in per[name].items()}
        chosen, shown = image_set({im: set(v) for im, v in at.items()}, ts, n_img)
        got = [[at[im][t] for im in chosen] for t in shown]
        mets = [m for m in metric_names if all(m in g for pt in got for g in pt)]
        f = first[name]

        def col(k: str, pts: list[list[dict]] = got) -> list[float]:
            return [mean(g[k] for g in pt) for pt in pts]

        def spread(k: str, pts: list[list[dict]] = got) -> dict[str, list[float]]:
            return {"min": [min(g[k] for g in pt) for pt in pts], "max": [max(g[k] for g in pt) for pt in pts],
                    "std": [statistics.pstdev([g[k] for g in pt]) for pt in pts]}

        outside = {t: sum(t in v for v in at.values()) for t in ts if t not in shown}
        curves[name] = {
            "codec": f["codec"], "scale": f["scale"], "mode": f["mode"], "images": n_img,
            "images_with_points": len(per[name]), "images_failed": len(failed[name]),
            "image_set": chosen, "target_bpp": shown, "bpp": list(shown),
            "bpp_no_headers": [mean(g.get("bpp_no_headers", t) for g in pt) for t, pt in zip(shown, got, strict=True)],
            "n_images": [len(chosen)] * len(shown), "few_images": [False] * len(shown),
            "targets_outside_set": [{"target_bpp": t, "images": n} for t, n in outside.items() if n],
            "encode_s": col("encode_s"), "decode_s": col("decode_s"),
            "metrics": {m: col(m) for m in mets}, "spread": {m: spread(m) for m in mets},
            "failed_settings": sorted({q for rs in per[name].values() for r in rs
                                       for q in r.get("failed_settings", ())}),
        }
    return curves


# --- BD-rates ----------------------------------------------------------------------------------------------

def _bd(ra: list[float], da: list[float], rt: list[float], dt: list[float]) -> tuple[float | None, str]:
    """BD-rate (%) of test against anchor on their points (quality already signed so that higher is better),
    or None with the reason in words."""
    import bjontegaard as bd
    import numpy as np

    if len(ra) < 2 or len(rt) < 2:
        return None, "fewer than 2 points"
    if max(min(da), min(dt)) >= min(max(da), max(dt)):
        return None, "quality ranges do not overlap"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            v = float(bd.bd_rate(np.array(ra), np.array(da), np.array(rt), np.array(dt), method="pchip",
                                 require_matching_points=False, min_overlap=0))
        except Exception:  # the package raises on curves whose quality does not rise with the rate
            return None, "quality does not rise with the rate"
    return (None, "not a number") if math.isnan(v) else (v, "")


def _front(rows: list[dict], metric: str, sign: float) -> tuple[list[float], list[float]]:
    """(rates, signed qualities) of an image's points, sorted by rate, keeping only those better than every
    point at a lower rate. Rows of several curves (an envelope row's scale variants) are first made one curve:
    at every rate of any of them, the best of the variants whose points span that rate (each interpolated
    linearly in log rate), so the envelope lies on or above each variant."""
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if metric in r and r.get("bpp"):
            by[r.get("curve", "")].append((r["bpp"], sign * r[metric]))
    curves = [sorted(v) for v in by.values()]
    if len(curves) > 1:
        pts = []
        for x in sorted({b for c in curves for b, _ in c}):
            lx = math.log(x)
            vals = [_interp(lx, [math.log(b) for b, _ in c], [d for _, d in c]) for c in curves
                    if c[0][0] <= x <= c[-1][0]]
            pts.append((x, max(vals)))
    else:
        pts = curves[0] if curves else []
    rs, ds, best = [], [], -math.inf
    for b, d in pts:
        if d > best:
            rs.append(b)
            ds.append(d)
            best = d
    return rs, ds


def bd_rates(per_image: dict[str, dict[str, list[dict]]], anchor: str, metric_names: list[str],
             lower_better: dict[str, bool], references: dict[str, dict] | None = None,
             anchor_curve: dict | None = None) -> dict[str, dict[str, dict]]:
    """BD-rate (%) of each curve against the anchor per full-reference metric, the way the codec standards
    compute them (JVET common test conditions): per image, each curve on that image's own points, then the
    mean over the images where both curves have two points or more and their quality ranges overlap, with
    that count. per_image: {curve: {image: rows}} (an envelope row pools its variants' rows). A published
    reference curve has no per-image points: it is compared with the anchor's mean curve (said in the note)."""
    out: dict[str, dict[str, dict]] = {}
    a_imgs = per_image.get(anchor, {})
    for name, imgs in per_image.items():
        out[name] = {}
        for m in metric_names:
            sign = -1.0 if lower_better.get(m) else 1.0
            if not a_imgs:
                out[name][m] = {"bd_rate": None, "images": 0, "of": 0,
                                "note": "the anchor curve has no points to compare with"}
                continue
            both = sorted(set(imgs) & set(a_imgs))
            vals: dict[str, float] = {}
            why: dict[str, int] = defaultdict(int)
            for im in both:
                v, reason = _bd(*_front(a_imgs[im], m, sign), *_front(imgs[im], m, sign))
                if v is None:
                    why[reason] += 1
                else:
                    vals[im] = round(v, 3)
            e: dict[str, Any] = {"bd_rate": round(mean(vals.values()), 2) if vals else None, "images": len(vals),
                                 "of": len(both), "per_image": vals}
            left = "; ".join(f"{n} image{'s' if n > 1 else ''}: {r}" for r, n in sorted(why.items()))
            if not both:
                e["note"] = "no image has points on both this curve and the anchor"
            elif not vals:
                e["note"] = f"no image where both curves can be compared ({left})"
            elif left:
                e["note"] = f"left out: {left}"  # the count itself is shown beside the figure
            else:
                e["note"] = ""
            out[name][m] = e
    for name, ref in (references or {}).items():
        out[name] = {}
        for m in metric_names:
            sign = -1.0 if lower_better.get(m) else 1.0
            if m not in ref["metrics"] or not anchor_curve or m not in anchor_curve.get("metrics", {}):
                have = ", ".join(ref["metrics"]) or "none"
                out[name][m] = {"bd_rate": None, "images": 0, "of": 0,
                                "note": f"the published curve gives no {m} (it gives {have})"
                                if m not in ref["metrics"] else "the anchor curve has no points to compare with"}
                continue
            v, reason = _bd(anchor_curve["bpp"], [sign * x for x in anchor_curve["metrics"][m]],
                            ref["bpp"], [sign * x for x in ref["metrics"][m]])
            out[name][m] = {"bd_rate": None if v is None else round(v, 2), "images": None, "of": None,
                            "note": ("published figures: against the anchor's mean curve"
                                     + (f"; {reason}" if reason else ""))}
    return out


def envelope_name(codec: str) -> str:
    """Name of a codec's best-scale envelope row in the BD table."""
    return f"{codec}@best"


def per_image_rows(rows: list[dict], curves_def: list[Curve]) -> dict[str, dict[str, list[dict]]]:
    """{curve: {image: its rows}} for the BD-rates, plus one envelope row per codec measured at several scales
    (all its variants' rows of an image pooled; _front keeps the best)."""
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    scales: dict[str, set[int]] = defaultdict(set)
    for c in curves_def:
        if c.kind == "baseline":
            scales[c.codec].add(c.scale)
    for r in rows:
        if "skipped" in r or r.get("error"):
            continue
        out[r["curve"]][r["image"]].append(r)
        if not str(r["curve"]).startswith("cmc:") and len(scales.get(r["codec"], ())) > 1:
            out[envelope_name(r["codec"])][r["image"]].append(r)
    return {k: dict(v) for k, v in out.items()}


# --- published curves and CompressAI's format --------------------------------------------------------------

def _our_metric(name: str) -> str:
    """A metric column of a published file in cmcodec's spelling (CompressAI's 'psnr-rgb', 'ms-ssim' ...)."""
    from . import metrics

    back = {v: k for k, v in metrics.COMPRESSAI_NAMES.items()}
    back.update({"psnr": "psnr", "ms-ssim": "ms_ssim_rgb", "msssim": "ms_ssim_rgb"})  # CompressAI: RGB MS-SSIM
    return back.get(name.strip().lower(), name.strip())


def read_reference_curves(paths: Iterable[Path]) -> dict[str, dict]:
    """Published rate-distortion curves: CompressAI-format JSON ({"name", "results": {"bpp": [...], "psnr-rgb":
    [...]}}) or a CSV with columns name,bpp,METRIC... (one row per point). Keyed 'ref:NAME'; each says its
    source file. ConfigError names a file that is neither."""
    import csv

    out: dict[str, dict] = {}
    for p in paths:
        p = Path(p)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--reference-curves {p}: expected a readable JSON or CSV file, found {e}") from None
        found: dict[str, dict[str, list[float]]] = {}
        if p.suffix.lower() == ".json":
            try:
                data = json.loads(text)
                res = data.get("results", data)
                found[str(data.get("name") or p.stem)] = {k: [float(x) for x in v] for k, v in res.items()
                                                          if isinstance(v, list)}
            except (ValueError, AttributeError, TypeError) as e:
                raise ConfigError(f"--reference-curves {p}: expected CompressAI's JSON "
                                  f"{{'name', 'results': {{'bpp': [...], METRIC: [...]}}}}, found {e}") from None
        else:
            rows = list(csv.DictReader(text.splitlines()))
            if not rows or not {"name", "bpp"} <= set(rows[0]):
                raise ConfigError(f"--reference-curves {p}: expected a CSV with columns name,bpp,METRIC..., found "
                                  f"columns {', '.join(rows[0]) if rows else 'none'}")
            for r in rows:
                d = found.setdefault(r["name"], defaultdict(list))
                for k, v in r.items():
                    if k != "name" and v not in (None, ""):
                        try:
                            d[k].append(float(v))
                        except ValueError:
                            raise ConfigError(f"--reference-curves {p}: expected numbers in column {k}, "
                                              f"found {v!r}") from None
        for name, cols in found.items():
            if "bpp" not in cols or any(len(v) != len(cols["bpp"]) for v in cols.values()):
                raise ConfigError(f"--reference-curves {p}: curve {name!r} needs a bpp list and one value per "
                                  "point in every metric")
            order = sorted(range(len(cols["bpp"])), key=lambda i: cols["bpp"][i])
            out[f"ref:{name}"] = {"label": f"{name} (published)", "published": True, "source": str(p),
                                  "bpp": [cols["bpp"][i] for i in order],
                                  "metrics": {_our_metric(k): [v[i] for i in order] for k, v in cols.items()
                                              if k != "bpp"}}
    return out


def compressai_json(name: str, label: str, curve: dict) -> dict:
    """A curve in CompressAI's result format (what ``python -m compressai.utils.plot`` reads): metric names as
    CompressAI spells them where it has one (psnr-rgb, ms-ssim-rgb), cmcodec's otherwise; the channels and
    units stated in the description."""
    from . import metrics

    res: dict[str, list[float]] = {"bpp": list(curve["bpp"])}
    said = []
    for m, v in curve.get("metrics", {}).items():
        res[metrics.COMPRESSAI_NAMES.get(m) or m] = list(v)
        said.append(f"{metrics.COMPRESSAI_NAMES.get(m) or m}: {metrics.label(m)}")
    imgs = curve.get("image_set", [])
    return {"name": label, "description": f"cmcodec rd-curve {name}: means over {len(imgs)} images "
                                          f"({', '.join(imgs[:4])}{', ...' if len(imgs) > 4 else ''}) at whole-file "
                                          f"bpp; " + "; ".join(said), "results": res}


# --- the results -------------------------------------------------------------------------------------------

def shown_rows(out: Path, result: dict) -> list[dict]:
    """The rows results.json describes: each unit's current write when made by the run's key, with only the
    scores made under the run's metric keys."""
    keys = result.get("unit_keys", {})
    mkeys = result.get("metric_keys", {})
    rows = []
    for r in current_rows(load_points(out)):
        if keys.get(unit_key(r["image"], r["curve"])) != r.get("made_by"):
            continue
        r = {k: v for k, v in r.items() if k not in mkeys or r.get("metric_keys", {}).get(k) == mkeys[k]}
        rows.append(r)
    return rows


def finish(out: Path, curves_def: list[Curve], metric_names: list[str], anchor: str, settings: dict,
           skipped_metrics: dict[str, str], lower_better: dict[str, bool], unit_keys: dict[str, str] | None = None,
           metric_keys: dict[str, str] | None = None, references: dict[str, dict] | None = None) -> dict:
    """Write points.csv, results.json, bd_rate.md and one CompressAI-format JSON per curve (compressai/) from
    the rows of points.jsonl made by this run's keys (the plots and report.html: ``report.write_report``).
    unit_keys: unit_key -> made_by of each unit (None: every stored row of the run's curves)."""
    from .. import __version__
    from ..media.fileio import write_bytes
    from . import metrics

    names = {c.name for c in curves_def}
    if unit_keys is None:
        unit_keys = {unit_key(r["image"], r["curve"]): r.get("made_by") for r in current_rows(load_points(out))
                     if r["curve"] in names}
    mkeys = dict(metric_keys or {})
    rows = shown_rows(out, {"unit_keys": unit_keys, "metric_keys": mkeys})
    # per-image CSV: metric columns headed with their channel and unit ('psnr (RGB, dB)')
    heads = {m: metrics.label(m) for m in metric_names}
    write_csv(out / "points.csv", [{heads.get(k, k): v for k, v in r.items()} for r in
                                   sorted(rows, key=lambda r: (r["image"], r["curve"], r.get("target_bpp", 0)))])
    curves = aggregate(rows, metric_names, settings.get("targets_bpp"))
    for c in curves_def:  # a curve no unit has reached yet is still listed
        curves.setdefault(c.name, {"codec": c.codec, "scale": c.scale,
                                   "mode": c.mode, "images": 0, "images_with_points": 0, "images_failed": 0,
                                   "image_set": [], "target_bpp": [], "bpp": [], "bpp_no_headers": [],
                                   "n_images": [], "few_images": [], "targets_outside_set": [], "encode_s": [],
                                   "decode_s": [], "metrics": {}, "spread": {}, "failed_settings": []})
    labels = {c.name: c.label for c in curves_def}
    refs = references or {}
    fr = [m for m in metric_names if m not in skipped_metrics and metrics.mode_of(m) == "FR"]
    per = per_image_rows(rows, curves_def)
    for c in curves_def:
        per.setdefault(c.name, {})
    envelopes = sorted(k for k in per if k not in names)
    for e in envelopes:
        labels[e] = f"{refcodecs.CODECS[e.split('@')[0]].label} (best scale)"
    labels.update({k: v["label"] for k, v in refs.items()})
    bd = bd_rates(per, anchor, fr, lower_better, refs, curves.get(anchor))
    bd_left_out = {m: "a no-reference metric: BD-rates compare quality against the original"
                   for m in metric_names if m not in skipped_metrics and m not in fr}
    skipped_units = sorted({(r["curve"], r["skipped"]) for r in rows if "skipped" in r and not r.get("error")})
    failed_units = [{"image": r["image"], "curve": r["curve"], "why": r["skipped"], "attempts": r.get("attempts", 1)}
                    for r in rows if r.get("error")]
    metric_errors = sorted({(m, r["image"], why) for r in rows for m, why in r.get("metric_errors", {}).items()})
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
              "metrics": {m: metrics.describe(m) for m in metric_names},
              "points_rule": {"interpolation": "each image's own curve, linear in log bpp, onto the targets it covers "
                                               "(10% beyond its ends)",
                              "image_set": "a curve's points are means over one fixed set of images: the run of "
                                           "consecutive targets that maximises images x targets among those "
                                           f"covered by at least {FEW_IMAGES:.0%} of its images",
                              "bd_rate": "per image on its own points (pchip, bjontegaard), averaged over the images "
                                         "where both curves overlap (JVET common test conditions); envelope rows "
                                         "pool a codec's scale variants per image"},
              "encoders": encoders,
              "curves": {n: {"label": labels.get(n, n), **c} for n, c in curves.items()},
              "references": refs, "envelopes": {e: labels[e] for e in envelopes},
              "bd_rate": bd, "bd_rate_metrics_left_out": bd_left_out,
              "skipped": [{"curve": c, "why": w} for c, w in skipped_units],
              "failed_units": failed_units,
              "metric_errors": [{"metric": m, "image": i, "why": w} for m, i, w in metric_errors],
              "unit_keys": unit_keys, "metric_keys": mkeys,
              "headers": {b.name: b.headers for b in refcodecs.CODECS.values()}}
    write_bytes(out / "results.json", json.dumps(result, indent=1).encode(), force=True)
    write_bytes(out / "bd_rate.md", bd_table(bd, anchor, labels, result["metrics"]).encode(), force=True)
    cai = out / "compressai"
    cai.mkdir(exist_ok=True)
    wanted = set()
    for n, c in result["curves"].items():
        if c["bpp"]:
            f = cai / f"{re.sub(r'[^A-Za-z0-9.@-]+', '_', n)}.json"
            wanted.add(f.name)
            write_bytes(f, json.dumps(compressai_json(n, c["label"], c), indent=1).encode(), force=True)
    for stale in cai.glob("*.json"):  # curves of an earlier run into this folder
        if stale.name not in wanted:
            stale.unlink()
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
    force: bool = False  # recompute every unit, whatever is stored
    references: tuple[Path, ...] = ()  # published curves (read_reference_curves)
    noise: dict[str, int] = field(default_factory=dict)  # noise curves' noise_steps / noise_log2_k, where given


Bar = Callable[[str, int], Any]  # (description, total) -> a progress bar with update() and close()


def run(plan: Plan, output: Path, bar: Bar, warn: Callable[[str], None]) -> dict | None:
    """The whole rd-curve command: unusable codecs and metrics skipped with the reason (warn), every unit
    swept (resumed where its stored rows were made by the same key), then the results written. Returns the
    results (None on ranks other than the main one, whose points the main rank merges and writes), with
    'ran', 'topped_up' and 'reused' unit counts."""
    from ..distributed import is_main
    from ..media.images import split_readable

    if not plan.files:
        raise ConfigError("expected image files, found none")
    refs = read_reference_curves(plan.references)  # a bad file fails before the sweep
    # an image that cannot be read fails alone: left out of every curve, listed in the results (images_failed)
    files, bad = split_readable(plan.files)
    for p, why in bad.items():
        warn(f"{p.name}: {why}; left out of every curve")
    if not files:
        raise ImageInputError(f"expected readable images in {plan.files[0].parent}, found none "
                              f"({next(iter(bad.values()))})")
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
                  dtype=plan.dtype, noise=plan.noise) for f in files for c in curves]
    b = bar("rd-curve", len(units))
    t0 = time.perf_counter()
    count = sweep(units, output, plan.jobs, progress=lambda i, n: b.update(1), force=plan.force)
    b.update(count.reused)  # the bar counts every unit of the run, reused ones too
    b.close()
    if not is_main():
        return None
    folder = plan.files[0].parent
    settings = {"images": str(folder), "n_images": len(files),
                "images_failed": {p.name: why for p, why in bad.items()}, "targets_bpp": plan.targets,
                "codecs": use_codecs, "scales": plan.scales, "profiles": plan.profiles, "modes": plan.modes,
                "metrics": names, "metric_weights": plan.metric_weights, "jobs": plan.jobs, "effort": effort,
                "dtype": plan.dtype, "noise": plan.noise, "reference_curves": [str(p) for p in plan.references],
                "sweep_s_this_run": round(time.perf_counter() - t0, 1)}
    unit_keys = {unit_key(Path(u.image).name, u.curve.name): u.key() for u in units}
    result = finish(output, curves, names, anchor, settings, skipped, {n: m.lower_better for n, m in loaded.items()},
                    unit_keys, {n: m.key for n, m in loaded.items()}, refs)
    for e in result["metric_errors"]:
        warn(f"metric {e['metric']} could not score {e['image']}: {e['why']}; left out of its points")
    for f in result["failed_units"]:
        warn(f"unit failed after {f['attempts']} attempts: {f['image']} on {f['curve']}: {f['why']}")
    return {**result, "ran": count.ran, "topped_up": count.topped_up, "reused": count.reused,
            "images_failed": settings["images_failed"]}


def bd_table(bd: dict[str, dict[str, dict]], anchor: str, labels: dict[str, str],
             described: dict[str, dict] | None = None) -> str:
    """Markdown BD-rate table: percent rate change at equal quality against the anchor (negative: better), the
    number of images each mean is over, and a sentence for every cell without a number."""
    mets = list(dict.fromkeys(m for v in bd.values() for m in v))
    head = [(described or {}).get(m, {}).get("label", m) for m in mets]
    lines = [f"BD-rate (%) against {labels.get(anchor, anchor)} (negative: fewer bits at equal quality); per image, "
             "then the mean over the images where both curves overlap (their number in brackets)", "",
             "| curve | " + " | ".join(head) + " |", "|---|" + "---|" * len(mets)]
    for name in sorted(bd, key=_row_order):
        cells = []
        for m in mets:
            e = bd[name].get(m, {})
            if e.get("bd_rate") is None:
                cells.append("n/a: " + (e.get("note") or "not computed"))
            else:
                n = f" [{e['images']}/{e['of']} images]" if e.get("images") is not None else ""
                cells.append(f"{e['bd_rate']:+.1f}{n}" + (f" ({e['note']})" if e.get("note") else ""))
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _row_order(name: str) -> tuple:
    """BD rows: codec curves, their envelopes beside them, cmcodec's, then published ones."""
    return (name.startswith("ref:"), name.startswith("cmc:"), name.split("@")[0], "@best" not in name, name)
