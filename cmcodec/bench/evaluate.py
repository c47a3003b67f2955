"""CMC-Bench-style evaluation (Li et al., 2024): I2T x T2I profile x mode, scored by a FR and a NR metric.

For a folder of ground-truth images, each combination (captioner, decoder profile) is a *run*; each run
encodes every image in every mode through the real codec (the .cmc files are kept, so each bpp is a real
file size), decodes it, and scores consistency (full-reference metric against the ground truth) and
perception (no-reference metric). Overall = 2/3 mean(FR over modes) + 1/3 mean(NR over modes), as
CMC-Bench ranks; a lower-better metric enters with its sign flipped so that higher is always better.

Files are paired by name (stem), never by listing order; a missing or extra file is an error that names
them. Layout of an evaluation folder::

    OUT/captions/<i2t>.csv                 captions in CMC-Bench's format (,name,text); reused on reruns
    OUT/<run>/<mode>/<stem>.cmc, .png      encoded and decoded files (a run is <i2t>__<profile>)
    OUT/<run>/<mode>.made_by.jsonl        what made each .cmc and .png (key and bytes' hash)
    OUT/<run>/<mode>.scores.jsonl          per-image scores with the key of what made them
    OUT/captions/<i2t>.made_by.json        the captioner settings the cached captions were made with

A rerun reuses a stored file or score only under the same key, and redoes the rest (said on stderr);
``--force`` redoes all.
    OUT/<run>/scores.json, radar.png       the run's table and radar plot
    OUT/leaderboard.{md,csv,json}          every run of the folder, best Overall first
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..core.errors import CmcodecError, ConfigError, ImageInputError, ModelError
from ..media.fileio import append_jsonl, atomic_path, read_jsonl, write_bytes, write_csv
from .metrics import UNITS, mean

CMC_BENCH_MODES = ("text", "pixel", "image", "full")  # the modes CMC-Bench scores
MODES = (*CMC_BENCH_MODES, "noise")  # leaderboard columns, in this order
CATEGORY_PREFIXES = ("NSI", "SCI", "AIGI")


@dataclass(frozen=True)
class Run:
    """One combination: captioner and decoder profile (the captioner is unused in the image mode)."""

    i2t: str
    profile: str

    @property
    def name(self) -> str:
        """Folder name of the run; a user profile's names its definition too (another definition: another run,
        never the files of the old one)."""
        from ..core.profiles import definition_tag

        return f"{_slug(self.i2t)}__{_slug(self.profile)}{definition_tag(self.profile)}"


def _slug(s: str) -> str:
    """File-system-safe name of a model id or path."""
    return "".join(c if c.isalnum() or c in "-." else "-" for c in Path(s).name or s).strip("-") or "model"


def pair_by_name(gt: list[Path], results: list[Path], what: str) -> list[tuple[Path, Path]]:
    """(ground truth, result) pairs matched by file stem; missing or extra files raise ConfigError naming them."""
    g = {p.stem: p for p in gt}
    r = {p.stem: p for p in results}
    missing, extra = sorted(set(g) - set(r)), sorted(set(r) - set(g))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
        if extra:
            parts.append(f"extra {len(extra)} ({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''})")
        raise ConfigError(f"{what}: expected one result per ground-truth image, found " + " and ".join(parts))
    return [(g[s], r[s]) for s in sorted(g)]


def category(stem: str, table: dict[str, str] | None = None) -> str:
    """Content category: from the table (name or stem), else the file-name prefix (NSI_, SCI_, AIGI_), else 'all'."""
    if table:
        return table.get(stem) or table.get(stem.split(".")[0], "other")
    head = stem.split("_", 1)[0]
    return head if head in CATEGORY_PREFIXES else "all"


def read_captions(path: Path) -> dict[str, str]:
    """Captions by stem from a CMC-Bench CSV (columns ,name,text; name with or without extension)."""
    from ..media.fileio import read_csv_pairs

    return {Path(k).stem: v for k, v in read_csv_pairs(path, "name", "text").items()}


def write_captions(path: Path, caps: dict[str, str], suffix: dict[str, str]) -> None:
    """Captions CSV in CMC-Bench's format, atomically."""
    import io

    from ..media.fileio import write_bytes

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["", "name", "text"])
    for i, stem in enumerate(sorted(caps)):
        w.writerow([i, stem + suffix.get(stem, ".png"), caps[stem]])
    write_bytes(path, buf.getvalue().encode(), force=True)


@dataclass
class Scorer:
    """The FR and NR metrics (pyiqa) with their directions."""

    fr: object
    nr: object

    @classmethod
    def load(cls, fr: str, nr: str, weights_dir: Path | None = None, device: str = "cpu") -> Scorer:
        """Both metrics, or a ConfigError naming the one that cannot be loaded and how to supply weights."""
        from . import metrics

        loaded, skipped = metrics.load([fr, nr], device=device, weights_dir=weights_dir)
        for name, want in ((fr, "FR"), (nr, "NR")):
            if name in skipped:
                raise ConfigError(f"metric {name}: {skipped[name]}; put its weights in --metric-weights DIR "
                                  f"(e.g. {name.replace('_', '-')}.pth) or choose another pyiqa {want} metric")
            if loaded[name].mode != want:
                raise ConfigError(f"metric {name} is {loaded[name].mode}: expected a {want} metric")
        return cls(loaded[fr], loaded[nr])

    def axes(self) -> tuple[Axis, Axis]:
        """The FR and NR axes (direction and stated range) of the Overall and the radar."""
        return Axis.of(self.fr.name, self.fr.lower_better), Axis.of(self.nr.name, self.nr.lower_better)

    def score(self, out: Image.Image, gt: Image.Image) -> dict[str, float]:
        """FR and NR of one decoded image."""
        return {"fr": round(self.fr(out, gt), 6), "nr": round(self.nr(out), 6)}

    @property
    def key(self) -> str:
        """What decides the scores: both metrics' keys (name, options, pyiqa version, weights)."""
        return f"{self.fr.name}:{getattr(self.fr, 'key', '')}+{self.nr.name}:{getattr(self.nr, 'key', '')}"


def _hash(*parts: object) -> str:
    """A short hash of JSON-able parts (the keys of stored files and scores)."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sha(path: Path) -> str:
    from .rd import file_sha

    return file_sha(path)


def _load_scores(path: Path) -> dict[str, dict]:
    """Per-image scores already on disk (the last row of each image)."""
    return {r["name"]: r for r in read_jsonl(path)}


def _append(path: Path, row: dict) -> None:
    """Append one JSON line (one finished image: an interruption loses at most the image in flight)."""
    append_jsonl(path, [row])


def score_folder(gt_files: list[Path], mode_dir: Path, scorer: Scorer, what: str, cache: Path,
                 progress: Callable[[], None] | None = None, force: bool = False) -> list[dict]:
    """Score every decoded image of a mode folder against the ground truth, paired by name; per-image
    scores are kept in ``cache`` (JSON lines) with the key of what made them (both metrics, the ground truth's
    and the decoded image's bytes) and reused only under the same key (never with force). Under several
    processes each scores its share and rank 0 merges the rows."""
    from ..distributed import merged, rank_path, shard
    from ..media.images import load_image

    results = image_files(mode_dir)
    pairs = pair_by_name(gt_files, results, what)
    cache.parent.mkdir(parents=True, exist_ok=True)
    merged(cache)  # rows an interrupted multi-process run left behind
    keys = {g.stem: _hash(scorer.key, _sha(g), _sha(r)) for g, r in pairs}
    done = {} if force else {k: v for k, v in _load_scores(cache).items() if v.get("key") == keys.get(k)}
    part = rank_path(cache)
    for _ in range(sum(g.stem in done for g, _ in pairs) if progress else 0):
        progress()  # type: ignore[misc]
    for gt, res in shard([(g, r) for g, r in pairs if g.stem not in done]):
        ref = load_image(gt)
        out = load_image(res)
        if out.size != ref.size:
            out = out.resize(ref.size, Image.BICUBIC)
        cmc = res.with_suffix(".cmc")
        row = {"name": gt.stem, **scorer.score(out, ref),
               "bpp": cmc.stat().st_size * 8 / (ref.width * ref.height) if cmc.exists() else None,
               "key": keys[gt.stem]}
        _append(part, row)
        if progress:
            progress()
    merged(cache)
    done = _load_scores(cache)
    return [done[gt.stem] for gt, _ in pairs]


MADE_BY = "made_by.jsonl"  # <mode>.made_by.jsonl beside each mode folder: the key of each stored .cmc and .png
# (the last row of a name wins)


# CMC-Bench (Li et al., 2024) combines its fine-tuned TOPIQ pair as they are: both score about 0..1, higher better
CMC_BENCH_PAIR = ("topiq_fr", "topiq_nr")


@dataclass(frozen=True)
class Axis:
    """One metric axis of the Overall and the radar: its direction and pyiqa's stated score range.

    The normalisation rule for a pair other than CMC-Bench's: ``(score - lo) / (hi - lo)`` on the metric's
    ``score_range`` as pyiqa states it (``bench.metrics.score_range``) (bounds marked ``~`` are approximate), clipped to
    [0, 1], and ``1 - that`` for lower-better metrics, so that 1 is best on every axis.
    """

    name: str
    lower_better: bool
    lo: float | None = None
    hi: float | None = None
    approx: bool = False

    @classmethod
    def of(cls, name: str, lower_better: bool) -> Axis:
        """The axis of a pyiqa metric (no score range known: lo = hi = None, and no Overall is formed)."""
        from . import metrics

        try:
            text = metrics.score_range(name)
        except ImportError:
            text = ""
        parts = [x.strip() for x in text.split(",")]
        try:
            lo, hi = (float(x.lstrip("~")) for x in parts)
        except ValueError:
            return cls(name, lower_better)
        if not hi > lo:
            return cls(name, lower_better)
        return cls(name, lower_better, lo, hi, "~" in text)

    @property
    def unit(self) -> str:
        """What a raw score is measured in: a unit, else the stated range."""
        if self.name in UNITS:
            return UNITS[self.name]
        if self.lo is None:
            return "score"
        t = "~" if self.approx else ""
        return f"{t}{self.lo:g}..{t}{self.hi:g}" + (", lower better" if self.lower_better else "")

    @property
    def span(self) -> str:
        """The stated range with the unit where there is one: '~0..~40 dB', '0..100, lower better'."""
        if self.lo is None:
            return "no stated range"
        t = "~" if self.approx else ""
        unit = f" {UNITS[self.name]}" if self.name in UNITS else ""
        return f"{t}{self.lo:g}..{t}{self.hi:g}{unit}" + (", lower better" if self.lower_better else "")

    def norm(self, v: float) -> float:
        """The score on [0, 1], 1 best (the rule in the class docstring); nan without a range."""
        if self.lo is None or self.hi is None or math.isnan(v):
            return math.nan
        x = min(1.0, max(0.0, (v - self.lo) / (self.hi - self.lo)))
        return 1.0 - x if self.lower_better else x


def overall_rule(fr: Axis, nr: Axis) -> tuple[str, str]:
    """(rule id, the sentence the reports print): cmc-bench, normalised, or none (why not combined)."""
    if (fr.name, nr.name) == CMC_BENCH_PAIR:
        return "cmc-bench", ("Overall = 2/3 mean FR + 1/3 mean NR over modes, on the raw TOPIQ scores "
                             "(CMC-Bench's formula)")
    missing = [a.name for a in (fr, nr) if a.lo is None]
    if missing:
        return "none", (f"no Overall: {', '.join(missing)} has no stated score range, so its scale cannot be "
                        "put beside the other metric's")
    return "normalised", ("Overall = 2/3 mean FR' + 1/3 mean NR' over modes, each score mapped to [0, 1] "
                          "on pyiqa's stated range (FR " + f"{fr.name} {fr.span}, NR {nr.name} {nr.span}" + "), "
                          "clipped, 1 = best")


def summarize(per_mode: dict[str, list[dict]], fr: Axis, nr: Axis, categories: dict[str, str] | None = None) -> dict:
    """Per mode mean FR, NR (raw and normalised) and bpp; Overall by overall_rule; the same per category."""
    rule, sentence = overall_rule(fr, nr)

    def table(rows_by_mode: dict[str, list[dict]]) -> dict:
        modes = {}
        for mode, rows in rows_by_mode.items():
            bpps = [r["bpp"] for r in rows if r.get("bpp") is not None]
            f, n = mean(r["fr"] for r in rows), mean(r["nr"] for r in rows)
            modes[mode] = {"fr": f, "nr": n, "fr_norm": fr.norm(f), "nr_norm": nr.norm(n),
                           "bpp": mean(bpps) if bpps else None, "images": len(rows)}
        if not modes or rule == "none":
            overall = math.nan
        elif rule == "cmc-bench":
            sf, sn = (-1 if fr.lower_better else 1), (-1 if nr.lower_better else 1)
            overall = (2 / 3 * mean(sf * m["fr"] for m in modes.values())
                       + 1 / 3 * mean(sn * m["nr"] for m in modes.values()))
        else:
            overall = (2 / 3 * mean(m["fr_norm"] for m in modes.values())
                       + 1 / 3 * mean(m["nr_norm"] for m in modes.values()))
        return {"modes": modes, "overall": overall}

    out = table(per_mode)
    out["overall_rule"], out["overall_text"] = rule, sentence
    out["axes"] = {"fr": {"metric": fr.name, "unit": fr.unit, "range": [fr.lo, fr.hi], "lower_better": fr.lower_better},
                   "nr": {"metric": nr.name, "unit": nr.unit, "range": [nr.lo, nr.hi], "lower_better": nr.lower_better}}
    cats: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for mode, rows in per_mode.items():
        for r in rows:
            cats[category(r["name"], categories)][mode].append(r)
    if len(cats) > 1 or (cats and next(iter(cats)) != "all"):
        out["categories"] = {c: table(m) for c, m in sorted(cats.items())}
    return out


def radar_axes(summary: dict) -> tuple[list[str], list[float]]:
    """(label, radius) of each radar axis: FR then NR per mode; the label names the metric and gives the raw
    mean with its unit, the radius is the normalised score (0 where it is not defined)."""
    axes = summary.get("axes", {})
    labels, vals = [], []
    for kind in ("fr", "nr"):
        a = axes.get(kind, {})
        for m, d in summary["modes"].items():
            labels.append(f"{m} {kind.upper()} {a.get('metric', '')}\n{d[kind]:.4g} {a.get('unit', '')}".rstrip())
            v = d.get(f"{kind}_norm")
            vals.append(0.0 if v is None or math.isnan(v) else v)
    return labels, vals


def radar(summary: dict, title: str, path: Path) -> None:
    """Radar plot of one run: FR and NR per mode (CMC-Bench's figures). Every axis is the normalised score
    (Axis.norm: 0 at the worst end of the metric's stated range, 1 at the best), labelled with the raw mean
    and its unit, so 20 dB and 40 PIQE points are never drawn on one raw scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels, vals = radar_axes(summary)
    if len(labels) < 3:
        labels, vals = labels * 2, vals * 2  # a polygon needs three axes
    ang = np.linspace(0, 2 * np.pi, len(labels), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), subplot_kw={"polar": True})
    ax.plot([*ang, ang[0]], [*vals, vals[0]], "o-", lw=1.5)
    ax.fill([*ang, ang[0]], [*vals, vals[0]], alpha=0.2)
    ax.set_ylim(0, 1)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0])
    ax.set_xticks(ang)
    ax.set_xticklabels(labels, fontsize=7)
    overall = summary["overall"]
    ax.set_title(f"{title}\nOverall {overall:.4g}" if not math.isnan(overall) else f"{title}\nno Overall",
                 fontsize=9)
    fig.text(0.5, 0.01, "radius: score on [0, 1] of the metric's stated range, 1 best", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    try:
        with atomic_path(path, force=True) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def leaderboard(summaries: dict[str, dict], out: Path, fr_name: str, nr_name: str) -> list[dict]:
    """leaderboard.md / .csv / .json of the runs, best Overall first."""
    rows = []
    for name, s in summaries.items():
        row = {"run": name, "i2t": s.get("i2t"), "profile": s.get("profile"), "overall": s["overall"],
               "overall_rule": s.get("overall_rule")}
        for m in MODES:
            if m in s["modes"]:
                d = s["modes"][m]
                row.update({f"{m}_fr": d["fr"], f"{m}_nr": d["nr"], f"{m}_bpp": d["bpp"]})
        rows.append(row)
    rows.sort(key=lambda r: -r["overall"] if not math.isnan(r["overall"]) else math.inf)
    units = next((s["axes"] for s in summaries.values() if "axes" in s), {})
    write_bytes(out / "leaderboard.json", json.dumps({"fr": fr_name, "nr": nr_name, "axes": units, "runs": rows},
                                                    indent=1).encode(), force=True)
    write_csv(out / "leaderboard.csv", rows)
    modes = [m for m in MODES if any(f"{m}_fr" in r for r in rows)]

    def fmt(v) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

    fu, nu = (f" ({units[k]['unit']})" if k in units else "" for k in ("fr", "nr"))

    rules = sorted({s.get("overall_text", "Overall = 2/3 mean FR + 1/3 mean NR over modes")
                    for s in summaries.values()})
    lines = [f"Consistency (FR): {fr_name}; perception (NR): {nr_name}; " + "; ".join(rules), "",
             "| rank | run | Overall | " + " | ".join(f"{m} FR{fu} | {m} NR{nu} | {m} bpp" for m in modes) + " |",
             "|---|---|---|" + "---|---|---|" * len(modes)]
    for i, r in enumerate(rows, 1):
        cells = " | ".join(f"{fmt(r.get(f'{m}_fr'))} | {fmt(r.get(f'{m}_nr'))} | {fmt(r.get(f'{m}_bpp'))}"
                           for m in modes)
        lines.append(f"| {i} | {r['run']} | {fmt(r['overall'])} | {cells} |")
    write_bytes(out / "leaderboard.md", ("\n".join(lines) + "\n").encode(), force=True)
    return rows


def image_files(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name (the lister every folder run uses)."""
    from ..media.fileio import list_files

    return list_files(folder)


def caption_images(gt_files: list[Path], i2t: str, cache: Path, words: int, i2t_path: str | None,
                   device: str | None, batch: int = 8, given: dict[str, str] | None = None,
                   progress: Callable[[int], None] | None = None, dtype: str | None = None,
                   failed: dict[str, str] | None = None, force: bool = False) -> dict[str, str]:
    """Captions of every image: from ``given``, else the cache CSV, else the captioner (batched through
    codec.caption_many; under several processes each captions its share). New captions go to a JSON-lines
    file beside the cache as they come (a crash keeps them), folded into the CSV at the end. An image that
    cannot be read or captioned has no caption (a rerun tries it again); its error goes into ``failed``
    (stem: message) of the process that captioned it. The cache is used only when the file beside it
    (``.made_by.json``) says it was made by the same captioner, model folder, word budget and precision."""
    from ..distributed import barrier, is_main, merged, rank_path, shard

    parts = cache.with_suffix(".new.jsonl")
    cache.parent.mkdir(parents=True, exist_ok=True)
    suffix = {p.stem: p.suffix for p in gt_files}
    made_by = cache.with_suffix(".made_by.json")
    key = _hash(i2t, i2t_path, words, dtype)
    if is_main():
        old = json.loads(made_by.read_text()).get("key") if made_by.exists() else None
        if force or old != key:  # captions of other settings (or of no recorded ones) are not reused
            for f in (cache, parts):
                f.unlink(missing_ok=True)
            write_bytes(made_by, json.dumps({"key": key, "i2t": i2t, "i2t_path": i2t_path, "words": words,
                                             "dtype": dtype}).encode(), force=True)
    barrier()

    def fold() -> dict[str, str]:
        """The cache CSV with every finished part folded in (rank 0 writes it), as every process reads it."""
        merged(parts)
        if is_main() and parts.exists():
            caps = read_captions(cache) if cache.exists() else {}
            caps.update({r["name"]: r["text"] for r in read_jsonl(parts)})
            write_captions(cache, caps, suffix)
            parts.unlink()
        merged(parts)  # a barrier: the CSV is complete before anyone reads it
        return read_captions(cache) if cache.exists() else {}

    caps = fold()  # parts an interrupted run left behind
    given = {p.stem: given[p.stem] for p in gt_files if p.stem in given} if given else {}
    if is_main():  # given captions go into the cache too, overriding cached ones
        for stem, text in given.items():
            if caps.get(stem) != text or not cache.exists():
                _append(rank_path(parts), {"name": stem, "text": text})
    caps.update(given)
    todo = shard([p for p in gt_files if p.stem not in caps])
    if todo:
        from .. import codec

        opts = codec.EncodeOptions(i2t=i2t, i2t_path=i2t_path, device=device, dtype=dtype, caption_words=words)
        for k, text in codec.caption_many(todo, opts, batch_size=batch):
            if isinstance(text, CmcodecError):
                if failed is not None:
                    failed[todo[k].stem] = str(text)
            else:
                _append(rank_path(parts), {"name": todo[k].stem, "text": text})
            if progress:
                progress(1)
    return fold()


def encode_decode(gt_files: list[Path], run: Run, mode: str, mode_dir: Path, caps: dict[str, str],
                  model_path: str | None, device: str | None, progress: Callable[[], None] | None = None,
                  batch_size: int = 8, dtype: str | None = None, force: bool = False,
                  noise: dict[str, int] | None = None) -> dict[str, str]:
    """Encode and decode every image of a run in one mode (this process's share under several). A stored
    .cmc is kept only when MADE_BY says it was made by the same key (the image's bytes, profile, mode, caption,
    cmcodec's version; in noise mode also the model folder, device, T and log2 K) and its bytes are those
    recorded; a stored .png likewise (the .cmc's bytes, model folder, precision, device). Returns what was
    redone and why, by name."""
    from .. import __version__, codec
    from ..core.profiles import definition_hash, get_profile
    from ..distributed import barrier, merged, rank_path, shard
    from ..media.fileio import save_image, write_bytes
    from .rd import model_key

    definition = definition_hash(get_profile(run.profile))  # a user profile's changed definition is another key
    noise = dict(noise or {})
    shape = codec.noise_shape(get_profile(run.profile), noise.get("noise_steps"), noise.get("noise_log2_k"))
    mode_dir.mkdir(parents=True, exist_ok=True)
    book = mode_dir.parent / f"{mode_dir.name}.{MADE_BY}"
    merged(book)
    known = {r["name"]: r for r in read_jsonl(book)}
    part = rank_path(book)
    redone: dict[str, str] = {}
    recs: dict[str, dict] = {}
    todo: list[tuple[Path, str]] = []
    for p in shard(gt_files):
        cmc, png = mode_dir / f"{p.stem}.cmc", mode_dir / f"{p.stem}.png"
        cap = caps.get(p.stem) if mode != "image" else None
        enc_key = _hash(_sha(p), run.profile, definition, mode, cap, __version__,
                        # noise mode runs the profile's model while encoding (spec §10): its folder and device
                        # too, and the files' T and log2 K (spec §10.5)
                        *((model_key(model_path), str(device), *shape) if mode == "noise" else ()))
        rec = dict(known.get(p.stem, {}))
        fresh = (not force and cmc.exists() and rec.get("cmc") == enc_key and rec.get("cmc_sha") == _sha(cmc))
        if not fresh:
            if cmc.exists():
                redone[p.stem] = ("--force" if force else "made by other settings" if rec.get("cmc") != enc_key
                                  else "its bytes changed since it was written")
            data = codec.encode(p, mode=mode, profile=run.profile, caption=cap,
                                options=codec.EncodeOptions(model_path=model_path, device=device, **noise))
            write_bytes(cmc, data, force=True)
            rec = {"name": p.stem, "cmc": enc_key, "cmc_sha": _sha(cmc)}
            append_jsonl(part, [rec])
        recs[p.stem] = rec
        dec_key = _hash(rec["cmc_sha"], model_key(model_path), dtype, str(device))
        if not fresh or force or not png.exists() or rec.get("png") != dec_key or rec.get("png_sha") != _sha(png):
            if png.exists() and p.stem not in redone:
                redone[p.stem] = "--force" if force else "decoded by other settings or changed since"
            todo.append((cmc, dec_key))
        elif progress:
            progress()
    # decoded in batches of one profile, mode and size (one pipeline call each)
    for i, img in codec.decode_many((c.read_bytes() for c, _ in todo),
                                    codec.DecodeOptions(device=device, model_path=model_path, dtype=dtype),
                                    batch_size=batch_size):
        if isinstance(img, CmcodecError):
            raise img
        cmc, dec_key = todo[i]
        png = cmc.with_suffix(".png")
        save_image(img, png, force=True)
        append_jsonl(part, [{**recs[cmc.stem], "png": dec_key, "png_sha": _sha(png)}])
        if progress:
            progress()
    merged(book)
    barrier()  # scoring pairs every file
    return redone


# --- the protocol: what `cmcodec evaluate` runs (the CLI only parses options and shows progress) ---------

Bar = Callable[[str, int], Any]  # (description, total) -> a progress bar with update() and close()


def score_results(gt_files: list[Path], results: Path, modes: list[str], scorer: Scorer, output: Path,
                  categories: dict[str, str] | None, bar: Bar, force: bool = False) -> dict[str, dict]:
    """Summary of an existing result folder (one subfolder per mode, CMC-Bench's layout)."""
    for m in modes:  # every folder checked before any work: a mismatch is found in seconds
        d = results / m
        if not d.is_dir():
            raise ConfigError(f"{results}: expected a subfolder per mode, found no {m}/")
        pair_by_name(gt_files, image_files(d), str(d))
    per_mode = {}
    for m in modes:
        b = bar(f"score {m}", len(gt_files))
        per_mode[m] = score_folder(gt_files, results / m, scorer, str(results / m),
                                   output / results.name / f"{m}.scores.jsonl", b.update, force)
        b.close()
    s = summarize(per_mode, *scorer.axes(), categories)
    return {results.name: {**s, "i2t": None, "profile": None, "source": str(results)}}


def run_combinations(gt_files: list[Path], output: Path, modes: list[str], scorer: Scorer,
                     categories: dict[str, str] | None, i2ts: list[str], profiles: list[str],
                     given: dict[str, str] | None, i2t_dirs: dict[str, str], model_dirs: dict[str, str], words: int,
                     device: str | None, bar: Bar, warn: Callable[[str], None],
                     dtype: str | None = None, force: bool = False,
                     noise: dict[str, int] | None = None) -> dict[str, dict]:
    """Summaries of every captioner x profile run, each through every mode of the real codec that the
    profile's row decodes (the others are skipped with a warning); ``noise``: the noise mode's noise_steps /
    noise_log2_k (EncodeOptions fields) where given."""
    from ..core.profiles import get_profile
    from ..media.images import split_readable

    # an image that cannot be read fails alone: left out of every run (listed in each run's images_failed)
    readable, bad = split_readable(gt_files)
    unreadable = {p.stem: why for p, why in bad.items()}
    for stem, why in unreadable.items():
        warn(f"{stem}: {why}; left out of every run")
    if not readable:
        raise ImageInputError(f"expected readable images in {gt_files[0].parent}, found none "
                              f"({next(iter(unreadable.values()))})")
    summaries = {}
    for i2t in i2ts:
        caps: dict[str, str] = {}
        files, failed = readable, dict(unreadable)
        if any(m != "image" for m in modes):
            b = bar(f"caption {i2t}", len(readable))
            errors: dict[str, str] = {}
            caps = caption_images(readable, i2t, output / "captions" / f"{_slug(i2t)}.csv", words,
                                  i2t_dirs.get(i2t, i2t_dirs.get("*")), device, given=given, progress=b.update,
                                  dtype=dtype, failed=errors, force=force)
            b.close()
            # an image without a caption is left out of every mode of this captioner's runs, so that each
            # mode's means are over the same images (the merged cache says which: every process agrees)
            files = [p for p in readable if p.stem in caps]
            uncaptioned = {p.stem: errors.get(p.stem, "captioned by another process, which reported why")
                           for p in readable if p.stem not in caps}
            for stem, why in uncaptioned.items():
                warn(f"{stem}: no caption from {i2t} ({why}); left out of its runs")
            failed.update(uncaptioned)
            if not files:
                raise ModelError(f"captioner {i2t} captioned none of the {len(readable)} readable images "
                                 f"({next(iter(uncaptioned.values()))})")
        for prof in profiles:
            run = Run(i2t, prof)
            per_mode = {}
            row = get_profile(prof)
            if not any(m in row.modes for m in modes):
                warn(f"skipping {run.name}: the {prof} profile decodes none of the modes asked for "
                     f"({', '.join(modes)}; it decodes {', '.join(row.modes)})")
                continue
            for m in modes:
                if m not in row.modes:
                    warn(f"skipping {prof}/{m}: the {prof} profile decodes {', '.join(row.modes)} only")
                    continue
                d = output / run.name / m
                b = bar(f"{run.name} {m}", 2 * len(files))
                redone = encode_decode(files, run, m, d, caps, model_dirs.get(prof, model_dirs.get("*")), device,
                                       b.update, dtype=dtype, force=force, noise=noise)
                for stem, why in sorted(redone.items()):
                    warn(f"{run.name}/{m}/{stem}: redone ({why})")
                per_mode[m] = score_folder(files, d, scorer, str(d), output / run.name / f"{m}.scores.jsonl",
                                           b.update, force)
                b.close()
            s = summarize(per_mode, *scorer.axes(), categories)
            summaries[run.name] = {**s, "i2t": i2t, "profile": prof, "images_failed": failed}
    if not summaries:
        raise ConfigError(f"nothing to evaluate: none of the profiles ({', '.join(profiles)}) decodes any of the "
                          f"modes asked for ({', '.join(modes)})")
    return summaries


def write_reports(summaries: dict[str, dict], output: Path, fr: str, nr: str) -> None:
    """Each run's scores.json and radar plot, then the leaderboard of every run in the folder."""
    summaries = dict(summaries)
    for name, s in summaries.items():
        (output / name).mkdir(parents=True, exist_ok=True)
        write_bytes(output / name / "scores.json", json.dumps({**s, "fr": fr, "nr": nr}, indent=1).encode(), force=True)
        radar(s, name, output / name / "radar.png")
    for p in sorted(output.glob("*/scores.json")):  # runs of earlier invocations into the same folder
        if p.parent.name not in summaries:
            summaries[p.parent.name] = json.loads(p.read_text())
    leaderboard(summaries, output, fr, nr)
