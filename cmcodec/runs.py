"""Folder runs of encode and decode: which outputs a run makes, which existing ones it reuses, and the work
itself, yielded file by file as outcomes (``Done``) or that file's CmcodecError. The command line parses the
options into an ``EncodeRun`` / ``DecodeRun`` and prints what ``results`` yields; nothing here prints.

How a rerun decides what to reuse (README, "How resume decides what to reuse"): every output of a folder run
is keyed by everything that decides its bytes. The header of a ``.cmc`` holds some of it (mode, profile,
seed), the run record ``.cmcodec-run.jsonl`` beside the outputs the rest: per output its key (the input's
SHA-256, the budget, caption source, captioner and revision, reference codec, caption coders, library
versions...) and the SHA-256 of the bytes written. An existing output is skipped only when its bytes are
those recorded and the key is the one this run would write; otherwise it is redone, with the reason. An
existing file the record does not list is refused (--force replaces it). Outputs never land on an input or
on one another: both are refused before any work, --force or not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .core.errors import CmcodecError, ConfigError, OutputExistsError
from .core.ids import IMAGE_SUFFIXES, MODE_IDS
from .media.fileio import (
    append_jsonl,
    check_replaceable,
    list_files,
    output_exists,
    png_bytes,
    read_input,
    save_image,
    write_bytes,
)

# Threads that encode and write a folder decode's PNGs (None: writers_default()); benchmarks/e2e_speed.py
# --writers measures other counts.
PNG_WRITERS: int | None = None
# How much lower the writers' scheduling priority is than the run's (Linux nice levels, per thread): the thread
# that feeds the GPU, and the reader ahead of it, then get a core the moment they are ready; a writer still
# runs on every core they leave idle.
WRITER_NICENESS = 5


def writers_default() -> int:
    """PNG writer threads: one per core this process may run on, less two (the GPU's feeder and the reader)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 2)


def _lower_priority() -> None:
    """Run this thread WRITER_NICENESS levels below the process (Linux only: elsewhere a thread has no nice
    level of its own, and the process's would change)."""
    if sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):  # a sandbox that refuses setpriority: the writer runs as before
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + WRITER_NICENESS))


if TYPE_CHECKING:  # codec (numpy, the image loaders) is imported when a run starts, not with the CLI
    from PIL.Image import Image

    from . import codec
    from .core.bitstream import Header

DECODED_SUFFIX = ".decoded.png"  # decode's output name: NAME.png may be the very image that was encoded
RECORD = ".cmcodec-run.jsonl"  # the run record of a folder run, beside its outputs
# --json: one object per file with these keys (None where a value does not apply), in the order of the items
JSON_FIELDS = ("input", "output", "status", "reason", "bytes", "bpp", "mode", "profile", "seconds", "error")

Item = tuple[Path, Path]  # (input, output)


@dataclass
class Done:
    """A file's outcome that is not an error: the report line, its --json record and its status."""

    line: str
    record: dict
    status: str = "written"  # written; redone (options changed, or the output did; record["reason"] says); skipped


Result = tuple[int, "Done | CmcodecError"]  # (index into the items, the outcome or that item's error)


def record(src: Path, dst: Path, status: str, **values: object) -> dict:
    """A --json record (JSON_FIELDS)."""
    rec = dict.fromkeys(JSON_FIELDS)
    rec.update(input=str(src), output=str(dst), status=status, **values)
    return rec


def sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (read in blocks: inputs may be large)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def no_input_overwritten(items: list[Item], protected: dict[Path, str] | None = None) -> None:
    """Refuse, --force or not, an output that is an input of this run (the file itself or another one's), a
    protected file (resolved path: what it is), or the output of another item."""
    inputs = {src.resolve(): src for src, _ in items if not is_stream(src)}
    outputs: dict[Path, Path] = {}
    for src, dst in items:
        if is_stream(dst):
            continue
        rd = dst.resolve()
        hit = inputs.get(rd)
        if hit is not None:
            raise OutputExistsError(f"{dst}: output would overwrite its own input" if hit == src else
                                    f"{dst}: output would overwrite {hit}, an input of this run")
        if protected and rd in protected:
            raise OutputExistsError(f"{dst}: output would overwrite {protected[rd]} (nothing was written)")
        if rd in outputs:
            raise OutputExistsError(f"{outputs[rd]} and {src} would both be written to {dst}: rename one of them "
                                    "(nothing was written)")
        outputs[rd] = src


class RunRecord:
    """The run record of a folder: one JSON line per output written, {output, command, key, sha256}; the last
    line of an output wins. Processes of a sharded run append to files of their own (distributed.rank_path),
    read back together; a single process folds them into one file, one line per output."""

    def __init__(self, folder: Path, read_only: bool = False) -> None:
        from .distributed import rank_path, world

        self.folder = folder
        self.path = folder / RECORD
        self._lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        parts = [p for p in (self.path, *sorted(folder.glob(".cmcodec-run.rank*.jsonl"))) if p.is_file()] \
            if folder.is_dir() else []
        lines = 0
        for p in parts:
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{p}: unreadable run record ({e}); remove it, then rerun with --force") from None
            for line in text.splitlines():
                try:
                    r = json.loads(line)
                except ValueError:  # a line cut by a crash: its output is then not listed (refused, or --force)
                    continue
                lines += 1
                if isinstance(r, dict) and isinstance(r.get("output"), str):
                    self.entries[r["output"]] = r
        folded = any(p != self.path for p in parts) or lines > len(self.entries)
        if folded and not read_only and world()[1] == 1:
            write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in self.entries.values()).encode(),
                        force=True)
            for p in parts:
                if p != self.path:
                    p.unlink(missing_ok=True)
        self._append_to = rank_path(self.path)

    def add(self, src: Path, dst: Path, command: str, key: dict) -> None:
        """Record an output just written from src (its bytes hashed from the file) under key."""
        row = {"output": dst.name, "command": command, "input": str(src.resolve()), "key": key,
               "sha256": sha256(dst)}
        with self._lock:
            append_jsonl(self._append_to, [row])
            self.entries[dst.name] = row


_NAMES = {"input": "input image", "bpp": "--bpp", "max_bytes": "--max-bytes", "seed": "--seed", "mode": "--mode",
          "profile": "--profile", "words": "--words", "caption": "caption", "captioner": "captioner",
          "ref_codec": "reference codec", "caption_coders": "caption coders", "cmcodec": "cmcodec version"}


def changes(old: dict, new: dict) -> list[str]:
    """What differs between two keys, one phrase per field ('--bpp 0.05 -> 0.002', 'caption changed'). A field
    only one key has follows from another (a mode with a reference adds the reference codec): it is named only
    when nothing else differs."""
    out = []
    for k in dict.fromkeys([*old, *new]):
        a, b = old.get(k), new.get(k)
        if a == b or k not in old or k not in new:
            continue
        name = _NAMES.get(k, k.replace("_", " "))
        short = all(x is None or isinstance(x, (int, float)) or (isinstance(x, str) and len(x) <= 24)
                    for x in (a, b)) and k not in ("input", "caption")  # hashes and texts: named, not shown
        out.append(f"{name} {_show(a)} -> {_show(b)}" if short else f"{name} changed")
    if not out and old != new:
        out.append("options changed (" + ", ".join(_NAMES.get(k, k) for k in set(old) ^ set(new)) + ")")
    return out


def _show(v: Any) -> str:
    return "none" if v is None else str(v)


@dataclass
class _Run:
    """What encode and decode runs share: the outputs' record, and the decision for each existing output."""

    force: bool
    folder: bool
    output_dir: Path | None = None  # the folder of a folder run's outputs (its run record lives there)
    command: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.record = RunRecord(self.output_dir) if self.folder and self.output_dir is not None else None

    def decide(self, src: Path, dst: Path, key: Callable[[], dict], header_changes: Callable[[], list[str]]) -> \
            tuple[str, str | None]:
        """(status, reason) for one output: written (new, or --force), redone (the reason), or skipped. A
        single file's existing output without --force, and a folder's output that its record does not list,
        are OutputExistsErrors."""
        if is_stream(dst) or not output_exists(dst):
            return "written", None
        check_replaceable(dst)  # a FIFO or device named like an output is refused, never opened to check it
        if self.force:
            return "written", "--force"
        if self.record is None:
            raise OutputExistsError(f"{dst} exists: expected a new path (use --force to overwrite)")
        entry = self.record.entries.get(dst.name)
        if entry is None or entry.get("command") != self.command:
            raise OutputExistsError(f"{dst} exists and this folder's run record ({RECORD}) does not list it as a "
                                    f"cmcodec {self.command} output: use --force to replace it")
        try:
            if sha256(dst) != entry.get("sha256"):
                return "redone", "the output changed since it was written (damaged or edited)"
        except OSError as e:
            return "redone", f"the output cannot be read ({e.strerror or e})"
        why = header_changes()
        why += [w for w in changes(entry.get("key") or {}, key()) if w.split(" ")[0] not in
                {x.split(" ")[0] for x in why}]
        return ("redone", "; ".join(why)) if why else ("skipped", None)


def _result(i: int, fut: Future[Done]) -> Result:
    """(index, outcome) of a finished writer task, or (index, its CmcodecError)."""
    try:
        return i, fut.result()
    except CmcodecError as e:
        return i, e


def _finished(tasks: deque[tuple[int, Future[Done]]], most: int | None = None) -> Iterator[Result]:
    """The results of the background tasks at the front that are done, in order (while more than ``most``
    wait, the oldest is waited for: a bounded backlog); every one when most is None."""
    while tasks and (most is None or tasks[0][1].done() or len(tasks) > most):
        yield _result(*tasks.popleft())


def _versions(*dists: str) -> dict[str, str | None]:
    """Installed versions of distributions (no import), None for one not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for d in dists:
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = None
    return out


def is_stream(p: Path | str | None) -> bool:
    """True for ``-``: stdin as an input, stdout as an output (click's convention)."""
    return p is not None and str(p) == "-"


def shown(p: Path, output: bool = False) -> str:
    """A path as messages name it (``-`` as <stdin> / <stdout>)."""
    return ("<stdout>" if output else "<stdin>") if is_stream(p) else str(p)


def read_stdin(max_bytes: int) -> bytes:
    """All of stdin, refusing more than max_bytes (read one byte past the limit, never the whole stream)."""
    import sys

    from .core.errors import LimitError

    if sys.stdin.isatty():  # nothing was piped in: reading would wait for the terminal
        raise ConfigError("<stdin> (-) is a terminal: expected a file's bytes piped or redirected into it")
    data = sys.stdin.buffer.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LimitError(f"<stdin>: more than the limit of {max_bytes} bytes")
    if not data:
        raise ConfigError("<stdin>: expected a file's bytes, found nothing")
    return data


def write_stdout(data: bytes) -> None:
    """Bytes to stdout, flushed (an output of ``-o -``)."""
    import sys

    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _single_output(input: Path, output: str | None, suffix: str) -> Path:
    """The output of a one-file run: -o as given; inside -o when it is an existing folder or ends with a path
    separator (created); else NAME+suffix beside the input. A stream has no name to put in a folder."""
    name = (Path(input.name).stem if not is_stream(input) else None)
    if output is None:
        if name is None:
            raise ConfigError("reading stdin (-) needs -o FILE, or -o - for stdout")
        return input.with_name(name + suffix)
    if is_stream(output):
        return Path("-")
    folder = output.endswith(("/", os.sep)) or Path(output).is_dir()
    if not folder:
        return Path(output)
    if name is None:
        raise ConfigError(f"-o {output} is a folder, and stdin (-) has no name to put in it: expected -o FILE or "
                          "-o - for stdout")
    return Path(output) / (name + suffix)


def _folder_output(input: Path, output: str | None) -> Path:
    """The output folder of a folder run (refused: none, a file, or stdout)."""
    if output is None:
        raise ConfigError("folder input needs -o OUTPUT_FOLDER")
    if is_stream(output):
        raise ConfigError(f"{input} is a folder: a folder run writes one file per input, which -o - (stdout) "
                          "cannot hold; expected -o OUTPUT_FOLDER")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{output}: folder input needs an output folder, found a file")
    return out


def encode_items(input: Path, output: str | None) -> list[Item]:
    """(image, .cmc) pairs of an encode run: NAME.cmc beside the image, in -o when it is a folder, or -o for a
    file; OUTPUT/NAME.cmc for each image of a folder. ``-`` is stdin as input, stdout as -o. Two images of one
    name (a.png, a.jpg) are refused before any work."""
    if not is_stream(input) and input.is_dir():
        out = _folder_output(input, output)
        # pictures a decode run wrote into this folder, unchanged since (its record lists them with their bytes'
        # hash), are outputs, not images to encode
        decoded = {n: row.get("sha256") for n, row in RunRecord(input, read_only=True).entries.items()
                   if row.get("command") == "decode"}
        items = [(p, out / (p.stem + ".cmc")) for p in list_files(input)
                 if p.name not in decoded or sha256(p) != decoded[p.name]]
        if not items:
            raise ConfigError(f"{input}: no image files found (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    else:
        items = [(input, _single_output(input, output, ".cmc"))]
    no_input_overwritten(items)
    return items


def _encoded_images(*folders: Path) -> dict[Path, str]:
    """Images that encode runs recorded as their inputs in these folders' run records: no decode writes there."""
    out: dict[Path, str] = {}
    for f in folders:
        if f.is_dir():
            for row in RunRecord(f, read_only=True).entries.values():
                if row.get("command") == "encode" and isinstance(row.get("input"), str):
                    out[Path(row["input"])] = f"{row['input']}, an image encoded to {f / row['output']}"
    return out


def decode_items(input: Path, output: str | None) -> list[Item]:
    """(.cmc, image) pairs of a decode run: NAME.decoded.png beside the file, in -o when it is a folder, or -o
    for a file; OUTPUT/NAME.decoded.png for each .cmc of a folder, so that no decoded picture lands on an
    image that was encoded (refused in any case, as the run records of both folders list them). ``-`` is
    stdin as input, stdout (PNG) as -o."""
    if not is_stream(input) and input.is_dir():
        out = _folder_output(input, output)
        items = [(p, out / (p.stem + DECODED_SUFFIX)) for p in list_files(input, {".cmc"})]
        if not items:
            raise ConfigError(f"{input}: no .cmc files found")
        no_input_overwritten(items, _encoded_images(input, out))
    else:
        dst = _single_output(input, output, DECODED_SUFFIX)
        items = [(input, dst)]
        no_input_overwritten(items, {} if is_stream(input) or is_stream(dst) else
                             _encoded_images(input.parent, dst.parent))
        if dst.suffix.lower() == ".cmc":  # Pillow would save through cmcodec's own plugin: encode again
            raise ConfigError(f"-o {dst}: decode writes an image, and .cmc is cmcodec's own format; expected an "
                              "image file name such as NAME.png")
    return items


@dataclass(kw_only=True)
class EncodeRun(_Run):
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

    def __post_init__(self) -> None:
        from . import codec

        super().__post_init__()
        self.command = "encode"
        if self.mode != "auto":  # a mode the profile cannot decode is its own error (ProfileError), first
            from .core.profiles import get_profile

            get_profile(self.profile).mode(self.mode)
        uses_caption = codec.needs_captioner(self.mode, self.profile)
        given = self.caption is not None or self.captions is not None
        if given and not uses_caption:
            raise ConfigError(f"a caption was given, but profile {self.profile} in {self.mode} mode stores none "
                              "(its decoder reads none): drop --caption / --caption-file, or choose a mode and "
                              "profile that carry one")
        self.auto_caption = uses_caption and not given
        self._static = self._key_parts(uses_caption)
        self._hashes: dict[Path, str] = {}

    def _key_parts(self, uses_caption: bool) -> dict:
        """What decides every file of the run, beyond its image and caption (the run record's key)."""
        from .core import guidance, textcode

        o = self.options
        key: dict[str, Any] = {"cmcodec": __version__, "mode": self.mode, "profile": self.profile, "seed": self.seed,
                               "bpp": self.bpp, "max_bytes": self.max_bytes}
        if uses_caption:
            key["caption_coders"] = o.caption_coder or ",".join(textcode.available_coders())
        if self.auto_caption:
            from .models import i2t

            key.update(captioner=i2t.identity(o.i2t, o.i2t_path), words=o.caption_words, captioner_dtype=o.dtype,
                       **_versions("transformers", "torch"))
        if self.mode in ("pixel", "auto"):
            key.update(pixel_block=o.pixel_block, pixel_bits=o.pixel_bits)
        if self.mode in ("image", "full", "auto"):
            try:
                rc = guidance.REF_CODECS[o.ref_codec] if o.ref_codec else guidance.default_ref_codec()
                key.update(ref_codec=rc.name, ref_codec_version=rc.version() if rc.available() is None else None)
            except (CmcodecError, KeyError):
                key.update(ref_codec=o.ref_codec, ref_codec_version=None)  # each file then fails with the reason
            key["ref_bpp"] = o.ref_bpp
        if self.mode == "noise":  # the trajectory's shape and the model the encoder runs decide the file
            from .models.loading import folder_signature

            key.update(noise_steps=o.noise_steps, noise_log2_k=o.noise_log2_k, device=(o.device or "default"),
                       model=f"{os.path.abspath(o.model_path)} (files {folder_signature(o.model_path)})"
                       if o.model_path else None, **_versions("diffusers", "torch"))
        return key

    def _caption_of(self, src: Path) -> str | None:
        return self.captions.get(src.name) if self.captions is not None else self.caption

    def key(self, src: Path) -> dict:
        """The run record's key of src's output."""
        if src not in self._hashes:
            self._hashes[src] = sha256(src)
        return {**self._static, "input": self._hashes[src], "caption": self._caption_of(src)}

    def _header_changes(self, dst: Path) -> list[str]:
        """What the existing file's own header says differs from this run (mode, profile, seed)."""
        from .core.bitstream import read_header

        try:
            h = read_header(read_input(dst))
        except CmcodecError as e:
            return [f"the output does not read ({e})"]
        out = []
        if self.mode != "auto" and h.mode != self.mode:
            out.append(f"--mode {h.mode} -> {self.mode}")
        if h.profile_name != self.profile:
            out.append(f"--profile {h.profile_name} -> {self.profile}")
        if h.seed != self.seed:
            out.append(f"--seed {h.seed} -> {self.seed}")
        return out

    def work(self, src: Path, dst: Path, cap: str | None, status: str, reason: str | None, t0: float,
             image: object = None) -> Done:
        """Encode one image (src's picture, read already where given) with its caption (None: the
        captioner's, or none), write and record it."""
        from . import codec

        if self.captions is not None:
            cap = self.captions.get(src.name)
            if cap is None:
                raise ConfigError(f"{src.name}: no caption for it in {self.caption_file}")
        key = self.key(src) if self.record is not None else None
        if image is None:
            image = read_stdin(self.options.limits.max_file_bytes) if is_stream(src) else src
        r = codec.encode_result(image, mode=self.mode, caption=cap, bpp=self.bpp, max_bytes=self.max_bytes,
                                profile=self.profile, seed=self.seed, options=self.options)
        if is_stream(dst):
            write_stdout(r.data)
        else:
            write_bytes(dst, r.data, status != "written" or self.force, (src,))
        if self.record is not None and key is not None:
            self.record.add(src, dst, self.command, key)
        h = r.header
        line = (f"{shown(src)} -> {shown(dst, True)}: {len(r.data)} bytes, {h.bpp:.5f} bpp, mode {r.mode}, profile "
                f"{h.profile_name}" + (f", caption {r.caption!r}" if r.caption else "")
                + (f" (redone: {reason})" if status == "redone" else ""))
        return Done(line, record(src, dst, status, reason=reason, bytes=len(r.data), bpp=h.bpp, mode=r.mode,
                                 profile=h.profile_name, seconds=round(time.perf_counter() - t0, 4)), status)

    def _skipped(self, src: Path, dst: Path) -> Done:
        from .core.bitstream import read_header

        h = read_header(read_input(dst))
        return Done("", record(src, dst, "skipped", bytes=h.file_size, bpp=h.bpp, mode=h.mode,
                               profile=h.profile_name), "skipped")

    def results(self, its: list[Item]) -> Iterator[Result]:
        """Captions batch_size at a time (one I2T call), then each file coded with its caption. Each image is
        read once, in reader threads a batch ahead of the captioner (Pillow decodes without the GIL), and the
        captioner and the coder take the same picture. A file whose caption is final and whose mode runs no
        model in the encoder (text, pixel, image, full) is coded and written in coder threads while the
        captioner works on the next batch; others (noise, auto, a caption still to be made) in this thread,
        which owns the models."""
        from . import codec
        from .media.images import load_image

        def load(src: Path) -> Image | CmcodecError:
            try:
                data = read_stdin(self.options.limits.max_file_bytes) if is_stream(src) else src
                return load_image(data, self.options.limits)
            except CmcodecError as e:
                return e

        def decided(batch: range) -> Iterator[Result | tuple[int, str, str | None]]:
            for i in batch:
                src, dst = its[i]
                try:
                    status, reason = self.decide(src, dst, lambda src=src: self.key(src),
                                                 lambda dst=dst: self._header_changes(dst))
                except (CmcodecError, OSError) as e:
                    yield i, e if isinstance(e, CmcodecError) else ConfigError(f"{src}: {e.strerror or e}")
                    continue
                yield (i, self._skipped(src, dst)) if status == "skipped" else (i, status, reason)

        batches = [range(s, min(s + self.batch_size, len(its))) for s in range(0, len(its), self.batch_size)]
        modelless = self.mode in MODE_IDS  # the encoder of these modes runs no model but the captioner
        coded: deque[tuple[int, Future[Done]]] = deque()  # files handed to the coder threads, in order
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, \
                ThreadPoolExecutor(max_workers=writers_default(), initializer=_lower_priority) as coders:
            nxt: tuple[list, dict] | None = None

            def start(batch: range) -> tuple[list, dict]:
                """Decide a batch and start reading the images it will code."""
                done, todo = [], {}
                for r in decided(batch):
                    if len(r) == 2:
                        done.append(r)
                    else:
                        todo[r[0]] = (r[1], r[2], pool.submit(load, its[r[0]][0]))
                return done, todo

            for b, batch in enumerate(batches):
                t0 = time.perf_counter()  # seconds of a file: from its batch's start (captioning shared) to written
                done, todo = nxt if nxt is not None else start(batch)
                yield from done
                nxt = start(batches[b + 1]) if b + 1 < len(batches) else None  # read ahead while this one works
                images: dict[int, Image] = {}
                for i, (_, _, fut) in todo.items():
                    img = fut.result()
                    if isinstance(img, CmcodecError):
                        yield i, img
                    else:
                        images[i] = img
                caps: dict[int, str | CmcodecError] = {}
                # a batch of one file: encode_result captions it, asking for words that fit its budget
                if self.auto_caption and len(todo) > 1 and images:
                    order = list(images)
                    for k, c in codec.caption_many([images[i] for i in order], self.options,
                                                   batch_size=self.batch_size):
                        caps[order[k]] = c
                for i, img in images.items():
                    status, reason, _ = todo[i]
                    c = caps.get(i, self.caption)
                    if isinstance(c, CmcodecError):
                        yield i, c
                    elif modelless and (c is not None or not self.auto_caption) and not is_stream(its[i][1]):
                        coded.append((i, coders.submit(self.work, *its[i], c, status, reason, t0, image=img)))
                    else:
                        try:
                            yield i, self.work(*its[i], c, status, reason, t0, image=img)
                        except CmcodecError as e:
                            yield i, e
                    yield from _finished(coded, 2 * self.batch_size)
            yield from _finished(coded)


def _decoder_key(header: Header, options: codec.DecodeOptions) -> dict:
    """What decides a decoded picture besides the file: nothing more for a model-free (classic) file; for a
    neural profile its models (hub revision, or the folder's signature), precision, device kind and the
    libraries that run them."""
    from .core.profiles import MODEL_FREE, get_profile

    prof = get_profile(header.profile_id)
    if prof.mode(header.mode).pipeline in MODEL_FREE:
        return {}
    from .models.loading import folder_signature, revision_for

    key: dict[str, Any] = {"profile": prof.name}
    model_dir, vae_dir = options.folders(prof)
    for part, repo, rev, folder in (("model", prof.model, prof.revision, model_dir),
                                    ("vae", prof.vae, prof.vae_revision, vae_dir),
                                    ("controlnet", prof.controlnet, prof.controlnet_revision, None)):
        if folder:
            key[part] = f"{os.path.abspath(folder)} (files {folder_signature(folder)})"
        elif repo:
            name = prof.name if part == "model" else f"{prof.name}:{part}"
            key[part] = f"{repo}@{revision_for(name, repo, rev)[0] or 'main'}"
    key.update(dtype=options.dtype, device=(options.device or "default").split(":")[0],
               **_versions("diffusers", "transformers", "torch"))
    if header.mode == "noise":  # a prefix decode is another picture (spec §10.6)
        key["steps_available"] = options.steps_available
    return key


@dataclass(kw_only=True)
class DecodeRun(_Run):
    """A decode of items with one set of runtime options."""

    options: codec.DecodeOptions
    batch_size: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self.command = "decode"

    def key(self, src: Path, header: Header | None = None) -> dict:
        """The run record's key of src's decoded picture."""
        from .core.bitstream import read_header

        h = header or read_header(read_input(src, self.options.limits.max_file_bytes), self.options.limits)
        return {"cmcodec": __version__, "input": sha256(src), **_decoder_key(h, self.options)}

    def results(self, its: list[Item]) -> Iterator[Result]:
        """decode_many over the files whose output may be written; each image saved and recorded as it comes."""
        from . import codec
        from .core.bitstream import read_header

        # datas() runs in decode_many's reader thread: it appends, this generator reads (ready[k] exists once
        # decode_many yields k) and pops early results
        # (item, status, reason, start, header, key, bytes) per file handed over
        ready: list[tuple[int, str, str | None, float, Header | None, dict | None, int]] = []
        early: deque[Result] = deque()  # refusals and skips, reported between decoded files

        def datas() -> Iterator[bytes]:
            for i, (src, dst) in enumerate(its):
                t0 = time.perf_counter()
                try:
                    limit = self.options.limits.max_file_bytes
                    data = read_stdin(limit) if is_stream(src) else read_input(src, limit)
                    try:
                        h: Header | None = read_header(data, self.options.limits)
                    except CmcodecError:
                        h = None  # decode_many reports the error for this file
                    key = self.key(src, h) if h is not None and self.record is not None else None
                    status, reason = self.decide(src, dst, lambda key=key: key or {}, list)
                    if status == "skipped" and h is not None:
                        early.append((i, Done("", record(src, dst, status, bytes=len(data), bpp=h.bpp, mode=h.mode,
                                                         profile=h.profile_name), status)))
                        continue
                except CmcodecError as e:
                    early.append((i, e))
                    continue
                ready.append((i, status, reason, t0, h, key, len(data)))
                yield data

        def save(k: int, img: object) -> Done:
            i, status, reason, t0, h, key, nbytes = ready[k]
            src, dst = its[i]
            if is_stream(dst):
                write_stdout(png_bytes(img))
            else:
                save_image(img, dst, self.force or status == "redone", (src,))
            if self.record is not None and key is not None:
                self.record.add(src, dst, self.command, key)
            return Done(f"{shown(src)} -> {shown(dst, True)}: {img.size[0]}x{img.size[1]}"  # type: ignore[attr-defined]
                        + (f" (redone: {reason})" if status == "redone" else ""),
                        record(src, dst, status, reason=reason, bytes=nbytes, bpp=h.bpp if h else None,
                               mode=h.mode if h else None, profile=h.profile_name if h else None,
                               seconds=round(time.perf_counter() - t0, 4)), status)

        # PNG encoding (without the GIL: fileio.save_image) and fsync run in writer threads at a lower
        # priority, overlapping the next batch on the GPU
        pending: deque[tuple[int, Future[Done]]] = deque()
        with ThreadPoolExecutor(max_workers=PNG_WRITERS or writers_default(), initializer=_lower_priority) as pool:
            for j, res in codec.decode_many(datas(), self.options, batch_size=self.batch_size):
                while early:
                    yield early.popleft()
                if isinstance(res, CmcodecError):
                    yield ready[j][0], res
                    continue
                pending.append((ready[j][0], pool.submit(save, j, res)))
                yield from _finished(pending, 2 * self.batch_size)
            yield from _finished(pending)
        while early:
            yield early.popleft()
