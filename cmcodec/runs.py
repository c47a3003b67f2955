"""Folder runs of encode and decode: which outputs a run makes, which existing ones it reuses, and the work
itself, yielded file by file as outcomes (``Done``) or that file's CmcodecError. The command line parses the
options into an ``EncodeRun`` / ``DecodeRun`` and prints what ``results`` yields; nothing here prints.

A run goes on past a failing file: each outcome is tied to its item's index, in whatever order the batched
work finishes.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .core.errors import CmcodecError, ConfigError, OutputExistsError
from .core.ids import IMAGE_SUFFIXES
from .media.fileio import list_files, read_input, save_image, write_bytes

DECODED_SUFFIX = ".decoded.png"  # decode's default: NAME.png may be the very image that was encoded
# --json: one object per file with these keys (None where a value does not apply), in the order of the items
JSON_FIELDS = ("input", "output", "status", "bytes", "bpp", "mode", "profile", "seconds", "error")

if TYPE_CHECKING:  # codec (numpy, the image loaders) is imported when a run starts, not with the CLI
    from . import codec

Item = tuple[Path, Path]  # (input, output)


@dataclass
class Done:
    """A file's outcome that is not an error: the report line, its --json record and its status."""

    line: str
    record: dict
    status: str = "written"  # written, redone (an output that did not verify was replaced), skipped


Result = tuple[int, "Done | CmcodecError"]  # (index into the items, the outcome or that item's error)


def record(src: Path, dst: Path, status: str, **values: object) -> dict:
    """A --json record (JSON_FIELDS)."""
    rec = dict.fromkeys(JSON_FIELDS)
    rec.update(input=str(src), output=str(dst), status=status, **values)
    return rec


def no_input_overwritten(items: list[Item]) -> None:
    """Refuse, --force or not, an output that is an input of this run (the file itself or another one's)."""
    inputs = {src.resolve(): src for src, _ in items}
    for src, dst in items:
        hit = inputs.get(dst.resolve())
        if hit is not None:
            raise OutputExistsError(f"{dst}: output would overwrite its own input" if hit == src else
                                    f"{dst}: output would overwrite {hit}, an input of this run")


def plan(src: Path, dst: Path, force: bool, folder: bool, verify: Callable[[Path, Path], dict | None]) -> \
        tuple[str, dict | None]:
    """What to do for one output: ("written", None) for a new path or --force; in a folder run an output
    that exists is ("skipped", its record values) when verify accepts it, else ("redone", None); a single
    file's existing output without --force is an OutputExistsError."""
    if force or not dst.exists():
        return "written", None
    if not folder:
        raise OutputExistsError(f"{dst} exists: expected a new path (use --force to overwrite)")
    got = verify(src, dst)
    return ("skipped", got) if got is not None else ("redone", None)


def _result(i: int, fut: Future[Done]) -> Result:
    """(index, outcome) of a finished writer task, or (index, its CmcodecError)."""
    try:
        return i, fut.result()
    except CmcodecError as e:
        return i, e


def encode_items(input: Path, output: Path | None) -> list[Item]:
    """(image, .cmc) pairs of an encode run: NAME.cmc beside the image (or -o) for a file, OUTPUT/NAME.cmc
    for each image of a folder."""
    if input.is_dir():
        if output is None:
            raise ConfigError("folder input needs -o OUTPUT_FOLDER")
        if output.exists() and not output.is_dir():
            raise ConfigError(f"{output}: folder input needs an output folder, found a file")
        items = [(p, output / (p.stem + ".cmc")) for p in list_files(input)]
        if not items:
            raise ConfigError(f"{input}: no image files found (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    else:
        items = [(input, output or input.with_suffix(".cmc"))]
    no_input_overwritten(items)
    return items


def decode_items(input: Path, output: Path | None) -> list[Item]:
    """(.cmc, image) pairs of a decode run: NAME.decoded.png beside the file (or -o) for a file,
    OUTPUT/NAME.png for each .cmc of a folder."""
    if input.is_dir():
        if output is None:
            raise ConfigError("folder input needs -o OUTPUT_FOLDER")
        items = [(p, output / (p.stem + ".png")) for p in list_files(input, {".cmc"})]
        if not items:
            raise ConfigError(f"{input}: no .cmc files found")
    else:
        items = [(input, output or input.with_suffix(DECODED_SUFFIX))]
    no_input_overwritten(items)
    return items


@dataclass
class EncodeRun:
    """An encode of items with one set of options. captions: per image name (a folder's CSV), read from
    caption_file; else caption for every image, else the captioner of options runs."""

    mode: str
    profile: str
    seed: int
    bpp: float | None
    max_bytes: int | None
    caption: str | None
    captions: dict[str, str] | None
    caption_file: Path | None
    options: codec.EncodeOptions
    batch_size: int
    force: bool
    folder: bool

    def __post_init__(self) -> None:
        from . import codec

        self.auto_caption = (self.caption is None and self.captions is None
                             and codec.needs_captioner(self.mode, self.profile))

    def verify(self, src: Path, dst: Path) -> dict | None:
        """Record values of an existing output that validates; another run's settings are refused."""
        from . import codec

        try:
            data = read_input(dst)
            h = codec.validate(data)
        except CmcodecError:
            return None
        if (self.mode != "auto" and h.mode != self.mode) or h.profile_name != self.profile:
            raise OutputExistsError(f"{dst} exists from another run (mode {h.mode}, profile {h.profile_name}; this "
                                    f"run asks mode {self.mode}, profile {self.profile}): use --force to redo it")
        return {"bytes": len(data), "bpp": h.bpp, "mode": h.mode, "profile": h.profile_name}

    def work(self, src: Path, dst: Path, cap: str | None, status: str, t0: float) -> Done:
        """Encode one image with its caption (None: the captioner's, or none) and write it."""
        if self.captions is not None:
            cap = self.captions.get(src.name)
            if cap is None:
                raise ConfigError(f"{src.name}: no caption for it in {self.caption_file}")
        from . import codec

        r = codec.encode_result(src, mode=self.mode, caption=cap, bpp=self.bpp, max_bytes=self.max_bytes,
                                profile=self.profile, seed=self.seed, options=self.options)
        write_bytes(dst, r.data, status != "written" or self.force, (src,))
        h = r.header
        line = (f"{src} -> {dst}: {len(r.data)} bytes, {h.bpp:.5f} bpp, mode {r.mode}, profile {h.profile_name}"
                + (f", caption {r.caption!r}" if r.caption else ""))
        return Done(line, record(src, dst, status, bytes=len(r.data), bpp=h.bpp, mode=r.mode,
                                 profile=h.profile_name, seconds=round(time.perf_counter() - t0, 4)), status)

    def results(self, its: list[Item]) -> Iterator[Result]:
        """Captions batch_size at a time (one I2T call), then each file coded with its caption."""
        from . import codec

        for start in range(0, len(its), self.batch_size):
            t0 = time.perf_counter()  # seconds of a file: from its batch's start (captioning shared) to written
            todo: dict[int, str] = {}
            for i in range(start, min(start + self.batch_size, len(its))):
                try:
                    status, got = plan(*its[i], self.force, self.folder, self.verify)
                except CmcodecError as e:
                    yield i, e
                    continue
                if got is not None:
                    yield i, Done("", record(*its[i], status, **got), status)
                else:
                    todo[i] = status
            caps: dict[int, str | CmcodecError] = {}
            if self.auto_caption and len(todo) > 1:
                for k, c in codec.caption_many([its[i][0] for i in todo], self.options, batch_size=self.batch_size):
                    caps[list(todo)[k]] = c
            for i, status in todo.items():
                c = caps.get(i, self.caption)
                try:
                    if isinstance(c, CmcodecError):
                        raise c
                    yield i, self.work(*its[i], c, status, t0)
                except CmcodecError as e:
                    yield i, e


@dataclass
class DecodeRun:
    """A decode of items with one set of runtime options."""

    options: codec.DecodeOptions
    batch_size: int
    force: bool
    folder: bool

    def verify(self, src: Path, dst: Path) -> dict | None:
        """Record values for an existing output image that opens fully at the size the file's header gives."""
        from PIL import Image

        from .core.bitstream import read_header

        try:
            data = read_input(src)
            h = read_header(data)
            with Image.open(dst) as im:
                im.load()  # the whole image: a truncated or corrupt one fails here
                ok = im.size == (h.width, h.height)
        except (CmcodecError, OSError, SyntaxError, ValueError):
            return None
        return {"bytes": len(data), "bpp": h.bpp, "mode": h.mode, "profile": h.profile_name} if ok else None

    def results(self, its: list[Item]) -> Iterator[Result]:
        """decode_many over the files whose output may be written; each image saved as it comes."""
        from . import codec
        from .core.bitstream import read_header

        ready: list[tuple[int, str, float, object]] = []  # (item, status, start, header) per file handed over
        early: list[Result] = []  # refusals and skips, reported between decoded files

        def datas() -> Iterator[bytes]:
            for i, (src, dst) in enumerate(its):
                t0 = time.perf_counter()
                try:
                    status, got = plan(src, dst, self.force, self.folder, self.verify)
                    if got is not None:
                        early.append((i, Done("", record(src, dst, status, **got), status)))
                        continue
                    data = read_input(src)
                except CmcodecError as e:
                    early.append((i, e))
                    continue
                try:
                    h = read_header(data)
                except CmcodecError:
                    h = None  # decode_many reports the error for this file
                ready.append((i, status, t0, h))
                yield data

        def save(k: int, img: object) -> Done:
            i, status, t0, h = ready[k]
            src, dst = its[i]
            save_image(img, dst, self.force or status == "redone", (src,))
            return Done(f"{src} -> {dst}: {img.size[0]}x{img.size[1]}",  # type: ignore[attr-defined]
                        record(src, dst, status, bytes=src.stat().st_size, bpp=h.bpp if h else None,
                               mode=h.mode if h else None, profile=h.profile_name if h else None,
                               seconds=round(time.perf_counter() - t0, 4)), status)

        # PNG encoding and fsync run in writer threads, overlapping the next batch on the GPU
        pending: deque[tuple[int, Future[Done]]] = deque()
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for j, res in codec.decode_many(datas(), self.options, batch_size=self.batch_size):
                yield from early
                early.clear()
                if isinstance(res, CmcodecError):
                    yield ready[j][0], res
                    continue
                pending.append((ready[j][0], pool.submit(save, j, res)))
                while pending and (pending[0][1].done() or len(pending) > 2 * self.batch_size):
                    yield _result(*pending.popleft())
            while pending:
                yield _result(*pending.popleft())
        yield from early
